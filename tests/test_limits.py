"""Limits: prompt length and max_tokens, per-key rate, per-model queue, request deadline,
CORS per environment, and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ai_orchestrator.api.app import create_app
from ai_orchestrator.limits import prepare_generation
from ai_orchestrator.ratelimit import RateLimiter
from ai_orchestrator.settings import Environment, Settings
from tests.conftest import ADMIN_KEY, DIGITS, EMBEDDER, LLM, GatedBackend, assert_envelope

ROW = [0] * 64


@pytest.fixture
async def service(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[FastAPI]:
    """The app, with the settings changed as the test's parameter says."""
    changes: dict[str, Any] = getattr(request, "param", {})
    app = create_app(settings.model_copy(update=changes))
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


CHAT: dict[str, Any] = {"model": LLM, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/chat/completions", {**CHAT, "max_tokens": 2049}, "max_tokens"),
        ("/v1/completions", {"model": LLM, "prompt": "a", "max_tokens": 5000}, "max_tokens"),
        (
            "/api/inference",
            {"model_id": LLM, "inputs": "hi", "parameters": {"max_tokens": 9999}},
            "parameters.max_tokens",
        ),
        (
            "/v1/chat/completions",
            {
                "model": LLM,
                "messages": [{"role": "user", "content": "hi"}],
                "max_completion_tokens": 5000,
            },
            "max_completion_tokens",
        ),
    ],
)
async def test_max_tokens_over_the_limit_is_a_400_naming_it(
    client: httpx.AsyncClient, route: str, body: dict[str, Any], param: str
) -> None:
    error = assert_envelope(await client.post(route, json=body), 400, "invalid_input")
    assert "limit of 2048 (AIO_MAX_TOKENS_LIMIT)" in error["message"]
    assert error["param"] == param


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "x" * 40000}]}),
        ("/v1/completions", {"model": LLM, "prompt": "x" * 40000}),
        ("/v1/embeddings", {"model": EMBEDDER, "input": ["x" * 20000, "y" * 20000]}),
        ("/api/inference", {"model_id": LLM, "inputs": "x" * 40000}),
    ],
)
async def test_prompt_over_the_limit_is_a_400_naming_it(
    client: httpx.AsyncClient, route: str, body: dict[str, Any]
) -> None:
    error = assert_envelope(await client.post(route, json=body), 400, "invalid_input")
    assert "the limit is 32768 (AIO_MAX_PROMPT_CHARS)" in error["message"]
    assert "x" * 100 not in error["message"]


@pytest.mark.parametrize(
    "service", [{"rate_limit_per_s": 0.001, "rate_limit_burst": 2}], indirect=True
)
async def test_rate_limit_answers_429_with_retry_after(service: FastAPI) -> None:
    async with client_for(service) as http:
        statuses = [(await http.get("/api/models")).status_code for _ in range(2)]
        refused = await http.get("/api/models")
        health = await http.get("/health/live")
    assert statuses == [200, 200]
    assert_envelope(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert health.status_code == 200


def test_rate_limiter_refills_at_its_rate_and_keeps_callers_apart() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=1, clock=lambda: now[0])
    assert limiter.acquire("a") == 0
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0
    now[0] = 0.5
    assert limiter.acquire("a") == 0


@pytest.mark.parametrize("service", [{"queue_size": 1}], indirect=True)
async def test_full_model_queue_answers_503_with_retry_after(service: FastAPI) -> None:
    async with client_for(service) as http, service.state.orchestrator.models.use(DIGITS):
        response = await http.post("/api/inference", json={"model_id": DIGITS, "inputs": [ROW]})
    error = assert_envelope(response, 503, "queue_full")
    assert "AIO_QUEUE_SIZE" in error["message"]
    assert response.headers["retry-after"] == "1"


async def test_slow_request_gets_504_and_its_model_finishes_loading(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"request_timeout_s": 0.2}))
    backend = GatedBackend(settings)
    app.state.orchestrator.models._backends["onnxruntime"] = backend
    async with app.router.lifespan_context(app), client_for(app) as http:
        # The gate opens after the deadline: the request's late answer must be dropped.
        asyncio.get_running_loop().call_later(1.0, backend.gate.set)
        response = await http.post("/api/inference", json={"model_id": DIGITS, "inputs": [ROW]})
        error = assert_envelope(response, 504, "timeout")
        assert "AIO_REQUEST_TIMEOUT_S" in error["message"]
        assert app.state.orchestrator.models.is_ready(DIGITS)


@pytest.mark.parametrize("service", [{"cors_origins": ("http://localhost:3000",)}], indirect=True)
async def test_cors_preflight_from_an_allowed_origin_needs_no_key(service: FastAPI) -> None:
    headers = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with client_for(service) as http:
        response = await http.options("/v1/chat/completions", headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


@pytest.mark.parametrize("service", [{"cors_origins": ("http://localhost:3000",)}], indirect=True)
async def test_errors_of_the_direct_inference_route_carry_cors_headers(service: FastAPI) -> None:
    # /api/inference is served ahead of FastAPI's router; its errors must still pass
    # through the CORS middleware, or a browser cannot read them.
    async with client_for(service) as http:
        response = await http.post(
            "/api/inference",
            json={"model_id": "nope", "inputs": [ROW]},
            headers={"Origin": "http://localhost:3000"},
        )
    assert_envelope(response, 404, "model_not_found")
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_no_cors_headers_by_default_outside_development(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers={"Origin": "http://localhost:3000"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_default_to_localhost_in_development_and_none_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(env=Environment.DEVELOPMENT).cors_origins
    assert Settings(env=Environment.PRODUCTION).cors_origins == ()
    monkeypatch.setenv("AIO_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(env=Environment.PRODUCTION).cors_origins == (
        "https://a.example",
        "https://b.example",
    )


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (labels sorted by name)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no sample {prefix!r}")


async def test_metrics_count_requests_by_route_and_status_and_show_models(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/inference", json={"model_id": DIGITS, "inputs": [ROW]})
    await client.post("/api/inference", json={"model_id": DIGITS, "inputs": [["x"]]})
    await client.get("/no/such/path")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = {"route": "/api/inference", "method": "POST"}
    assert metric(text, "aio_requests_total", **route, status="200") == 1
    assert metric(text, "aio_requests_total", **route, status="400") == 1
    assert metric(text, "aio_requests_total", route="unmatched", method="GET", status="404") == 1
    assert metric(text, "aio_request_duration_seconds_count", route="/api/inference") == 2
    assert metric(text, "aio_model_ready", model=DIGITS) == 1
    assert metric(text, "aio_model_load_seconds", model=DIGITS) > 0
    assert metric(text, "aio_model_queue_depth", model=DIGITS) == 0
    assert metric(text, "aio_model_evictions_total", model=LLM) == 0
    assert metric(text, "process_resident_memory_bytes") > 0


async def test_metrics_need_the_admin_key_in_production(settings: Settings, key_file: Path) -> None:
    production = settings.model_copy(
        update={"env": Environment.PRODUCTION, "api_keys_file": key_file}
    )
    app = create_app(production)
    async with app.router.lifespan_context(app), client_for(app) as http:
        assert_envelope(await http.get("/metrics"), 401, "invalid_api_key")
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200
    assert "aio_requests_total" in response.text


@pytest.mark.parametrize(
    ("env", "logged"), [(Environment.DEVELOPMENT, True), (Environment.PRODUCTION, False)]
)
def test_prompts_are_logged_at_debug_in_development_only(
    caplog: pytest.LogCaptureFixture, env: Environment, logged: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="ai_orchestrator")
    request = {"messages": [{"role": "user", "content": "my secret plan"}]}
    prepared = prepare_generation(Settings(env=env), request)
    assert ("my secret plan" in caplog.text) is logged
    assert prepared["max_tokens"] == 2048
