from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ai_orchestrator.cli import main
from tests.conftest import DIGITS, INFERENCE_KEY, default_entries
from tests.server import ServiceProcess


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ai_orchestrator", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_malformed_catalogue_naming_entry_and_field(
    model_dir: Path, write_catalogue: Callable[[list[dict[str, Any]]], Path]
) -> None:
    entries = default_entries()
    entries[0]["backend"] = "tensorflow"
    result = run_cli(
        "serve",
        AIO_CATALOGUE=str(write_catalogue(entries)),
        AIO_MODEL_DIR=str(model_dir),
    )
    assert result.returncode == 2
    assert f"entry {entries[0]['id']!r}: field 'backend'" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_setting() -> None:
    result = run_cli("serve", AIO_PORT="eighty")
    assert result.returncode == 2
    assert "port" in result.stderr


def test_models_lists_the_catalogue_when_no_service_answers(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    model_dir: Path,
    write_catalogue: Callable[[list[dict[str, Any]]], Path],
) -> None:
    monkeypatch.setenv("AIO_CATALOGUE", str(write_catalogue(default_entries())))
    monkeypatch.setenv("AIO_MODEL_DIR", str(model_dir))
    assert main(["models", "--url", "http://127.0.0.1:9"]) == 0
    out = capsys.readouterr()
    assert DIGITS in out.out
    assert "no service answering" in out.err


@pytest.mark.server
def test_models_sends_its_key_and_says_when_the_service_refuses(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = ServiceProcess(preload="", AIO_API_KEYS_FILE=str(key_file))
    try:
        service.wait_ready()
        assert main(["models", "--url", service.url]) == 1
        assert f"{service.url} answered 401" in capsys.readouterr().err
        assert main(["models", "--url", service.url, "--key", INFERENCE_KEY]) == 0
        listed = capsys.readouterr().out
        assert f"{DIGITS}" in listed
        assert "unloaded" in listed
    finally:
        service.terminate()
