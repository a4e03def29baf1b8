"""Shared fixtures: a private copy of the default catalogue per test, and an in-process
client with the application's lifespan running."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from ai_orchestrator.api.app import create_app
from ai_orchestrator.backends.base import ModelHandle
from ai_orchestrator.backends.onnx import OnnxBackend
from ai_orchestrator.catalogue import CatalogueEntry
from ai_orchestrator.settings import Environment, Settings

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
LLM = "smollm2-135m-instruct"
EMBEDDER = "smollm2-135m-embeddings"
DIGITS = "digits-classifier"
INFERENCE_KEY = "inference-0123456789abcdef0123"
ADMIN_KEY = "admin-0123456789abcdef0123456789"

# Figures that the closing note quotes (routes x keys checked, fuzz cases,
# load test counts, resident memory); printed in a section at the end of the run.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _no_service_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service reads its settings from AIO_* variables: a developer's shell (or an image
    that sets them) must not change what a test sees. Tests set the ones they need."""
    for name in [name for name in os.environ if name.startswith("AIO_")]:
        monkeypatch.delenv(name)


class GatedBackend(OnnxBackend):
    """The real ONNX backend, but each load waits for the test to open the gate."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = threading.Event()
        self.loads = 0

    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        self.loads += 1
        assert self.gate.wait(10)
        return super().load(entry, path)


def default_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load((MODELS / "catalogue.yaml").read_text())[
        "models"
    ]
    return entries


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory whose files a test may corrupt: the small ONNX file is copied,
    the large GGUF file is linked (tests that damage it replace the link)."""
    directory = tmp_path / "models"
    directory.mkdir()
    for entry in default_entries():
        source = MODELS / entry["path"]
        if (directory / entry["path"]).exists():
            continue  # two entries may share one file
        if source.stat().st_size < 10_000_000:
            shutil.copy(source, directory / entry["path"])
        else:
            (directory / entry["path"]).symlink_to(source)
    return directory


def write_key_file(path: Path) -> Path:
    path.write_text(f"# scope:key\ninference:{INFERENCE_KEY}\n\nadmin:{ADMIN_KEY}\n")
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A key file holding INFERENCE_KEY and ADMIN_KEY."""
    return write_key_file(tmp_path / "keys")


@pytest.fixture
def write_catalogue(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    def write(entries: list[dict[str, Any]]) -> Path:
        path = tmp_path / "catalogue.yaml"
        path.write_text(yaml.safe_dump({"models": entries}))
        return path

    return write


@pytest.fixture
def settings(model_dir: Path, write_catalogue: Callable[[list[dict[str, Any]]], Path]) -> Settings:
    return Settings(
        env=Environment.TEST,
        catalogue=write_catalogue(default_entries()),
        model_dir=model_dir,
        load_wait_s=30,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an error in the one envelope, with this status and code."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error
