"""The catalogue: which models exist, where their files are, and how to check them.

The catalogue is a YAML file with a ``models`` list and an optional ``routes`` list (a
named choice among models of one task, with a strategy). A malformed file stops start-up
with a message that names the entry and the field, rather than failing later at load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ai_orchestrator.errors import CatalogueError, ModelNotFound, shown


class Task(StrEnum):
    CHAT = "chat"
    TEXT_GENERATION = "text-generation"
    CLASSIFICATION = "classification"
    EMBEDDINGS = "embeddings"
    TENSOR = "tensor"


LLM_TASKS = frozenset({Task.CHAT, Task.TEXT_GENERATION, Task.EMBEDDINGS})


class CatalogueEntry(BaseModel):
    """One model the service may load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    task: Task
    backend: str = Field(pattern=r"^(llama_cpp|onnxruntime)$")
    path: Path
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free data for routing and display: description, accuracy, cost, tags."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend options, such as n_ctx and n_parallel for llama.cpp."""
    pinned: bool = False
    """Never unloaded to make room or when idle; only by an explicit unload."""
    keep_alive_s: float | None = None
    """Seconds the model stays loaded after its last request; overrides AIO_KEEP_ALIVE_S."""

    @field_validator("path")
    @classmethod
    def _relative_inside_model_dir(cls, value: Path) -> Path:
        if value.is_absolute() or ".." in value.parts:
            raise ValueError("must be relative to the model directory, without '..'")
        return value


class Strategy(StrEnum):
    LATENCY = "latency"
    ACCURACY = "accuracy"
    COST = "cost"


class Route(BaseModel):
    """A named choice among models: the strategy orders the candidates, and each one after
    the first is a fallback for the one before it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    task: Task
    candidates: tuple[str, ...] = Field(min_length=1)
    strategy: Strategy = Strategy.LATENCY


ROUTE_PREFIX = "route:"


class Catalogue:
    """The parsed catalogue, with the model directory its paths are relative to."""

    def __init__(
        self, entries: list[CatalogueEntry], model_dir: Path, routes: list[Route] | None = None
    ) -> None:
        self.model_dir = model_dir
        self._entries = {entry.id: entry for entry in entries}
        self.routes = {route.name: route for route in routes or []}

    def __iter__(self) -> Iterator[CatalogueEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def get(self, model_id: str) -> CatalogueEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            raise ModelNotFound(f"model {shown(model_id, 128)} is not in the catalogue") from None

    def route(self, name: str) -> Route:
        try:
            return self.routes[name.removeprefix(ROUTE_PREFIX)]
        except KeyError:
            named = shown(name.removeprefix(ROUTE_PREFIX), 128)
            raise ModelNotFound(f"route {named} is not in the catalogue") from None

    def file_of(self, entry: CatalogueEntry) -> Path:
        return self.model_dir / entry.path


def load_catalogue(path: Path, model_dir: Path) -> Catalogue:
    """Parse and validate the catalogue file; raise CatalogueError naming what is wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"catalogue {path}: cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"catalogue {path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise CatalogueError(f"catalogue {path}: expected a mapping with a 'models' list")

    entries: list[CatalogueEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(document["models"]):
        name = raw.get("id", f"#{index}") if isinstance(raw, dict) else f"#{index}"
        try:
            entry = CatalogueEntry.model_validate(raw)
        except ValidationError as exc:
            raise CatalogueError(f"catalogue {path}: entry {name!r}: {_describe(exc)}") from None
        if entry.id in seen:
            raise CatalogueError(f"catalogue {path}: entry {name!r}: field 'id': duplicate id")
        seen.add(entry.id)
        entries.append(entry)
    routes = _load_routes(path, document.get("routes") or [], {e.id: e for e in entries})
    return Catalogue(entries, model_dir, routes)


def _load_routes(path: Path, raw_routes: Any, entries: dict[str, CatalogueEntry]) -> list[Route]:
    if not isinstance(raw_routes, list):
        raise CatalogueError(f"catalogue {path}: 'routes' must be a list")
    routes: dict[str, Route] = {}
    for index, raw in enumerate(raw_routes):
        name = raw.get("name", f"#{index}") if isinstance(raw, dict) else f"#{index}"
        try:
            route = Route.model_validate(raw)
        except ValidationError as exc:
            raise CatalogueError(f"catalogue {path}: route {name!r}: {_describe(exc)}") from None
        if route.name in routes:
            raise CatalogueError(f"catalogue {path}: route {name!r}: duplicate name")
        for candidate in route.candidates:
            entry = entries.get(candidate)
            if entry is None or entry.task is not route.task:
                raise CatalogueError(
                    f"catalogue {path}: route {name!r}: candidate {candidate!r} is not a "
                    f"{route.task.value} model of the catalogue"
                )
        routes[route.name] = route
    return list(routes.values())


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "entry"
    return f"field {field!r}: {first['msg']}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
