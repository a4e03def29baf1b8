"""Routes from the OpenAI API on real LLMs (SmolLM2 and a tiny GGUF written here): fallback
before the first token, an in-band error and finish reason after it, keep-alive on /v1."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ai_orchestrator.api.app import create_app
from ai_orchestrator.backends.base import ChunkSink, ModelHandle
from ai_orchestrator.backends.llama import LlamaBackend
from ai_orchestrator.catalogue import CatalogueEntry
from ai_orchestrator.errors import InferenceFailed
from ai_orchestrator.settings import Environment, Settings
from tests.conftest import EMBEDDER, LLM, assert_envelope, default_entries
from tests.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.llm
BROKEN = "broken-chat"
BROKEN_EMBEDDER = "broken-embedder"
TINY = "tiny-llama"
CHAT = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 8}


class CutOffHandle(ModelHandle):
    """The real LLM, whose stream fails after its third chunk, as a crashed worker would."""

    def __init__(self, inner: ModelHandle) -> None:
        self.inner = inner

    def stream(self, kind: str, request: dict[str, Any], sink: ChunkSink) -> None:
        sent = 0

        def limited(chunk: dict[str, Any]) -> bool:
            nonlocal sent
            sent += 1
            return sink(chunk) or sent >= 3

        self.inner.stream(kind, request, limited)
        raise InferenceFailed("the model stopped answering mid-stream")

    def unload(self) -> None:
        self.inner.unload()


class CutOffBackend(LlamaBackend):
    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        return CutOffHandle(super().load(entry, path))


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


@pytest.fixture
async def app(
    model_dir: Path,
    tiny_file: Path,
    write_catalogue: Callable[[list[dict[str, Any]]], Path],
) -> AsyncIterator[FastAPI]:
    (llm,) = [entry for entry in default_entries() if entry["id"] == LLM]
    broken = {**llm, "id": BROKEN, "path": "missing.gguf", "metadata": {"cost": 0.1}}
    (model_dir / tiny_file.name).write_bytes(tiny_file.read_bytes())
    tiny = {
        **llm,
        "id": TINY,
        "path": tiny_file.name,
        "sha256": hashlib.sha256(tiny_file.read_bytes()).hexdigest(),
        "metadata": {"cost": 0.01},
        "options": {"n_ctx": 512, "n_parallel": 1},
    }
    (embedder,) = [entry for entry in default_entries() if entry["id"] == EMBEDDER]
    broken_embedder = {**embedder, "id": BROKEN_EMBEDDER, "path": "missing.gguf"}
    broken_embedder["metadata"] = {"cost": 0.0}
    models = [*default_entries(), broken, tiny, broken_embedder]
    routes = [
        {"name": "chat", "task": "chat", "candidates": [BROKEN, LLM], "strategy": "cost"},
        {"name": "cheap", "task": "chat", "candidates": [LLM, TINY], "strategy": "cost"},
        {
            "name": "embed",
            "task": "embeddings",
            "candidates": [EMBEDDER, BROKEN_EMBEDDER],
            "strategy": "cost",
        },
    ]
    path = write_catalogue(models)
    path.write_text(json.dumps({"models": models, "routes": routes}))
    settings = Settings(env=Environment.TEST, catalogue=path, model_dir=model_dir)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def api(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """conftest's client, on this module's app."""
    return client


def events(text: str) -> list[Any]:
    payloads = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


async def test_route_model_id_falls_back_past_a_model_whose_file_is_missing(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/v1/chat/completions", json={"model": "route:chat", **CHAT})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == LLM
    assert response.headers["x-passed-over"] == f"{BROKEN}=model_load_failed"


async def test_embeddings_route_falls_back_past_a_model_whose_file_is_missing(
    api: httpx.AsyncClient,
) -> None:
    body = {"model": "route:embed", "input": ["a cat", "a dog"]}
    response = await api.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == EMBEDDER
    assert len(response.json()["data"]) == 2
    assert response.headers["x-passed-over"] == f"{BROKEN_EMBEDDER}=model_load_failed"


async def test_a_chat_route_is_refused_on_the_embeddings_endpoint(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/embeddings", json={"model": "route:chat", "input": "a cat"})
    assert_envelope(response, 400, "unsupported_task")


async def test_route_answers_with_its_cheapest_real_model(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/chat/completions", json={"model": "route:cheap", **CHAT})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == TINY
    assert response.json()["usage"]["completion_tokens"] > 0
    assert "x-passed-over" not in response.headers


async def test_route_falls_back_when_the_cheapest_model_file_is_corrupt(
    api: httpx.AsyncClient, model_dir: Path
) -> None:
    path = model_dir / "tiny-llama.gguf"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    response = await api.post("/v1/chat/completions", json={"model": "route:cheap", **CHAT})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == LLM
    assert response.headers["x-passed-over"] == f"{TINY}=model_load_failed"


async def test_streamed_route_falls_back_before_the_first_token(api: httpx.AsyncClient) -> None:
    body = {"model": "route:chat", "stream": True, **CHAT}
    response = await api.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    chunks = events(response.text)
    assert chunks[-1] == "[DONE]"
    assert {chunk["model"] for chunk in chunks[:-1]} == {LLM}
    assert response.headers["x-passed-over"] == f"{BROKEN}=model_load_failed"


async def test_stream_that_fails_after_its_first_token_ends_with_finish_reason_and_error(
    api: httpx.AsyncClient, app: FastAPI
) -> None:
    app.state.orchestrator.models._backends["llama_cpp"] = CutOffBackend(
        app.state.orchestrator.settings
    )
    body = {**CHAT, "model": LLM, "stream": True, "max_tokens": 32}
    response = await api.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    chunks = events(response.text)
    assert any(chunk["choices"][0]["delta"].get("content") for chunk in chunks[:2])
    finish, error, done = chunks[-3:]
    assert finish["choices"][0]["finish_reason"] == "error"
    assert error["error"]["code"] == "inference_failed"
    assert done == "[DONE]"


async def test_keep_alive_on_the_openai_api_unloads_the_model_after_the_request(
    api: httpx.AsyncClient,
) -> None:
    body = {**CHAT, "model": LLM, "keep_alive": 0}
    assert (await api.post("/v1/chat/completions", json=body)).status_code == 200
    for _ in range(300):
        status = (await api.get(f"/api/models/{LLM}/status")).json()
        if status["state"] == "unloaded":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the model stayed loaded: {status}")
