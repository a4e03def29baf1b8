from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from ai_orchestrator.api.app import create_app
from ai_orchestrator.errors import OrchestratorError
from ai_orchestrator.settings import Settings
from tests.conftest import DIGITS, LLM, GatedBackend, assert_envelope


@pytest.mark.parametrize("route", ["/health", "/health/live"])
async def test_liveness_answers_while_nothing_is_loaded(
    client: httpx.AsyncClient, route: str
) -> None:
    response = await client.get(route)
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_ready_without_preload_models(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/ready")).json() == {"status": "ready"}


async def _client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_ready_is_503_until_the_preload_models_are_ready(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"preload": (DIGITS,)}))
    backend = GatedBackend(settings)
    app.state.orchestrator.models._backends["onnxruntime"] = backend
    async with app.router.lifespan_context(app), await _client_for(app) as http:
        error = assert_envelope(await http.get("/health/ready"), 503, "not_ready")
        assert DIGITS in error["message"]
        assert (await http.get("/health/live")).status_code == 200
        backend.gate.set()
        for _ in range(200):
            if (await http.get("/health/ready")).status_code == 200:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("never became ready")


async def test_ready_stays_503_when_a_preload_model_fails(settings: Settings) -> None:
    (settings.model_dir / "digits-classifier.onnx").write_bytes(b"broken")
    app = create_app(settings.model_copy(update={"preload": (DIGITS,)}))
    async with app.router.lifespan_context(app), await _client_for(app) as http:
        for _ in range(100):
            status = (await http.get(f"/api/models/{DIGITS}/status")).json()
            if status["state"] == "failed":
                break
            await asyncio.sleep(0.02)
        error = assert_envelope(await http.get("/health/ready"), 503, "not_ready")
        assert "failed" in error["message"]
        assert (await http.get("/health/live")).status_code == 200


async def test_loading_another_model_later_keeps_the_service_ready(
    client: httpx.AsyncClient,
) -> None:
    await client.post(f"/api/models/{DIGITS}/load")
    assert (await client.get("/health/ready")).status_code == 200


def test_preload_of_a_model_not_in_the_catalogue_stops_start_up(settings: Settings) -> None:
    with pytest.raises(OrchestratorError, match="ghost"):
        create_app(settings.model_copy(update={"preload": ("ghost", LLM)}))


async def test_docs_are_off_in_production(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"docs_enabled": False}))
    async with await _client_for(app) as http:
        assert_envelope(await http.get("/openapi.json"), 404, "not_found")
        assert_envelope(await http.get("/docs"), 404, "not_found")


async def test_a_preload_model_unloaded_after_loading_keeps_the_service_ready(
    settings: Settings,
) -> None:
    # A short keep-alive unloads it when idle; an admin's unload too. Either way the next
    # request reloads it, so the replica must stay in its load balancer's rotation.
    app = create_app(settings.model_copy(update={"preload": (DIGITS,), "keep_alive_s": 0.2}))
    async with app.router.lifespan_context(app), await _client_for(app) as http:
        for _ in range(200):
            if (await http.get("/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.02)
        for _ in range(200):
            status = (await http.get(f"/api/models/{DIGITS}/status")).json()
            if status["state"] == "unloaded":
                break
            await asyncio.sleep(0.02)
        assert status["state"] == "unloaded"
        assert (await http.get("/health/ready")).status_code == 200
        assert (await http.get("/v2/health/ready")).json() == {"ready": True}


async def test_a_preload_model_that_fails_on_reload_makes_the_service_unready(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"preload": (DIGITS,)}))
    async with app.router.lifespan_context(app), await _client_for(app) as http:
        await http.post(f"/api/models/{DIGITS}/load")
        await http.post(f"/api/models/{DIGITS}/unload")
        assert (await http.get("/health/ready")).status_code == 200
        (settings.model_dir / "digits-classifier.onnx").write_bytes(b"broken")
        assert (await http.post(f"/api/models/{DIGITS}/load")).status_code >= 500
        error = assert_envelope(await http.get("/health/ready"), 503, "not_ready")
        assert f"{DIGITS} (failed)" in error["message"]
        assert_envelope(await http.get("/v2/health/ready"), 503, "not_ready")


@pytest.mark.parametrize("route", ["/health", "/health/live", "/health/ready", "/v2/health/live"])
async def test_health_routes_answer_head_as_load_balancer_probes_send_it(
    client: httpx.AsyncClient, route: str
) -> None:
    response = await client.head(route)
    assert response.status_code == 200
    assert response.content == b""
