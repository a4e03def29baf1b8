from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ai_orchestrator.catalogue import Task, load_catalogue
from ai_orchestrator.errors import CatalogueError, ModelNotFound
from tests.conftest import DIGITS, default_entries

Write = Callable[[list[dict[str, Any]]], Path]


def test_default_catalogue_lists_both_embedded_models(
    model_dir: Path, write_catalogue: Write
) -> None:
    catalogue = load_catalogue(write_catalogue(default_entries()), model_dir)
    tasks = {entry.id: entry.task for entry in catalogue}
    assert tasks[DIGITS] is Task.CLASSIFICATION
    assert Task.CHAT in tasks.values()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": "painting"}, "task"),
        ({"backend": "tensorflow"}, "backend"),
        ({"sha256": "abc"}, "sha256"),
        ({"path": "../../etc/passwd"}, "path"),
        ({"path": "/etc/passwd"}, "path"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_malformed_entry_is_refused_naming_entry_and_field(
    model_dir: Path, write_catalogue: Write, change: dict[str, Any], field: str
) -> None:
    entries = default_entries()
    entries[1].update(change)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(write_catalogue(entries), model_dir)
    assert f"entry {entries[1]['id']!r}" in str(caught.value)
    assert f"field {field!r}" in str(caught.value)


def test_entry_without_id_is_named_by_position(model_dir: Path, write_catalogue: Write) -> None:
    entries = default_entries()
    del entries[0]["id"]
    with pytest.raises(CatalogueError, match=r"entry '#0': field 'id'"):
        load_catalogue(write_catalogue(entries), model_dir)


def test_duplicate_ids_are_refused(model_dir: Path, write_catalogue: Write) -> None:
    entries = default_entries()
    with pytest.raises(CatalogueError, match="duplicate id"):
        load_catalogue(write_catalogue([*entries, entries[0]]), model_dir)


@pytest.mark.parametrize("text", ["models: [", "just a string", "models: 3", ""])
def test_catalogue_that_is_not_a_model_list_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(text)
    with pytest.raises(CatalogueError, match=str(path)):
        load_catalogue(path, tmp_path)


def test_missing_catalogue_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot be read"):
        load_catalogue(tmp_path / "absent.yaml", tmp_path)


def test_unknown_model_lookup_raises_not_found(model_dir: Path, write_catalogue: Write) -> None:
    catalogue = load_catalogue(write_catalogue(default_entries()), model_dir)
    with pytest.raises(ModelNotFound, match="'ghost'"):
        catalogue.get("ghost")
