"""API keys: the key file, the scopes, and every route of the OpenAPI schema times every
kind of key, in development (keys optional) and production (keys required)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ai_orchestrator.api.app import create_app
from ai_orchestrator.auth import KeyRing, Scope
from ai_orchestrator.errors import ConfigurationError, Forbidden, Unauthorized
from ai_orchestrator.settings import Environment, Settings
from tests.conftest import ADMIN_KEY, DIGITS, FIGURES, INFERENCE_KEY, assert_envelope
from tests.test_cli import run_cli

WRONG_KEY = "wrong-0123456789abcdef0123456789"
KEYS: dict[str, dict[str, str]] = {
    "no key": {},
    "wrong key": {"Authorization": f"Bearer {WRONG_KEY}"},
    "inference key": {"Authorization": f"Bearer {INFERENCE_KEY}"},
    "admin key": {"X-API-Key": ADMIN_KEY},
}
ADMIN_ROUTES = {
    ("POST", "/api/models/{model_id}/load"),
    ("POST", "/api/models/{model_id}/unload"),
    ("GET", "/metrics"),
}


def test_key_file_gives_each_key_its_scope(key_file: Path) -> None:
    ring = KeyRing.from_file(key_file)
    assert len(ring) == 2
    assert ring.authenticate(INFERENCE_KEY).scope is Scope.INFERENCE
    assert ring.authenticate(ADMIN_KEY).scope is Scope.ADMIN


def test_key_ring_keeps_no_key_in_memory(key_file: Path) -> None:
    ring = KeyRing.from_file(key_file)
    held = repr(vars(ring)) + repr(ring.authenticate(ADMIN_KEY))
    assert INFERENCE_KEY not in held
    assert ADMIN_KEY not in held


@pytest.mark.parametrize("key", [None, "", WRONG_KEY, INFERENCE_KEY[:-1]])
def test_missing_or_unknown_key_is_unauthorized(key_file: Path, key: str | None) -> None:
    with pytest.raises(Unauthorized):
        KeyRing.from_file(key_file).authenticate(key)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("inference\n", "line 1: expected '<scope>:<key>'"),
        ("root:0123456789abcdef0123\n", "line 1: expected '<scope>:<key>'"),
        ("# keys\nadmin:tiny\n", "line 2: the key is shorter than 16"),
        ("admin:0123456789abcdef\ninference:0123456789abcdef\n", "line 2: the key appears twice"),
        ("# nothing\n\n", "holds no keys"),
    ],
)
def test_malformed_key_file_is_refused_without_showing_the_key(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=complaint) as caught:
        KeyRing.from_file(path)
    assert "0123456789abcdef" not in str(caught.value)
    assert "tiny" not in str(caught.value)


@pytest.mark.parametrize("env", [Environment.STAGING, Environment.PRODUCTION])
def test_app_refuses_to_start_without_keys_where_they_are_required(
    settings: Settings, env: Environment
) -> None:
    with pytest.raises(ConfigurationError, match="AIO_API_KEYS_FILE is required"):
        create_app(settings.model_copy(update={"env": env}))


def test_serve_exits_2_in_production_without_a_key_file(settings: Settings) -> None:
    result = run_cli(
        "serve",
        AIO_ENV="production",
        AIO_CATALOGUE=str(settings.catalogue),
        AIO_MODEL_DIR=str(settings.model_dir),
    )
    assert result.returncode == 2
    assert "AIO_API_KEYS_FILE is required in production" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_exits_2_with_an_unreadable_key_file(settings: Settings, tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        AIO_API_KEYS_FILE=str(tmp_path / "absent"),
        AIO_CATALOGUE=str(settings.catalogue),
        AIO_MODEL_DIR=str(settings.model_dir),
    )
    assert result.returncode == 2
    assert "cannot read it" in result.stderr


def test_wrong_scope_is_forbidden(key_file: Path) -> None:
    from ai_orchestrator.auth import authorize

    principal = KeyRing.from_file(key_file).authenticate(INFERENCE_KEY)
    with pytest.raises(Forbidden):
        authorize(principal, Scope.ADMIN)


def schema_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every (method, path template) in the service's OpenAPI schema."""
    schema = create_app(settings).openapi()
    return [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    ]


@pytest.fixture
async def apps(settings: Settings, key_file: Path) -> AsyncIterator[dict[str, FastAPI]]:
    variants = {
        "development": settings.model_copy(update={"env": Environment.DEVELOPMENT}),
        "development with key file": settings.model_copy(
            update={"env": Environment.DEVELOPMENT, "api_keys_file": key_file}
        ),
        "production": settings.model_copy(
            update={"env": Environment.PRODUCTION, "api_keys_file": key_file}
        ),
    }
    built = {name: create_app(variant) for name, variant in variants.items()}
    for app in built.values():
        await app.router.lifespan_context(app).__aenter__()
    yield built
    for app in built.values():
        await app.state.orchestrator.models.close()


def expected(env: str, key: str, method: str, path: str) -> tuple[int, str] | None:
    """The refusal a request should get, or None when it should get past the keys."""
    if path.startswith("/health") or env == "development":
        return None
    if key in ("no key", "wrong key"):
        return 401, "invalid_api_key"
    if key == "inference key" and (method, path) in ADMIN_ROUTES:
        return 403, "insufficient_scope"
    return None


async def call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        url = path.replace("{model_id}", DIGITS)
        body: Any = {} if method == "POST" else None
        return await http.request(method, url, headers=headers, json=body)


async def test_every_route_times_every_key_gets_the_right_answer(
    settings: Settings, apps: dict[str, FastAPI]
) -> None:
    routes = schema_routes(settings)
    assert ("GET", "/metrics") in routes
    checked = 0
    for env, app in apps.items():
        for method, path in routes:
            for key, headers in KEYS.items():
                response = await call(app, method, path, headers)
                refusal = expected(env, key, method, path)
                where = f"{env}, {key}: {method} {path}"
                if refusal is None:
                    assert response.status_code not in (401, 403), where
                    # The one 5xx expected: OIP model readiness while the model is unloaded.
                    unready = response.status_code == 503 and path.endswith("/ready")
                    assert response.status_code < 500 or unready, f"{where}: {response.text}"
                else:
                    assert_envelope(response, *refusal)
                checked += 1
    FIGURES.append(
        f"auth matrix: {len(routes)} routes x {len(KEYS)} keys x {len(apps)} settings "
        f"= {checked} requests checked"
    )


async def test_unknown_path_is_401_not_404_without_a_key(apps: dict[str, FastAPI]) -> None:
    response = await call(apps["production"], "GET", "/secret/admin", {})
    assert_envelope(response, 401, "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_bearer_scheme_is_case_insensitive(apps: dict[str, FastAPI]) -> None:
    headers = {"Authorization": f"bearer {INFERENCE_KEY}"}
    assert (await call(apps["production"], "GET", "/v1/models", headers)).status_code == 200


async def test_basic_authorization_is_not_taken_for_a_key(apps: dict[str, FastAPI]) -> None:
    headers = {"Authorization": f"Basic {INFERENCE_KEY}"}
    response = await call(apps["production"], "GET", "/v1/models", headers)
    assert_envelope(response, 401, "invalid_api_key")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {INFERENCE_KEY}", "X-API-Key": "wrong-" + "0" * 32},
        {"Authorization": "Bearer wrong-" + "0" * 32, "X-API-Key": INFERENCE_KEY},
        {"Authorization": f"Bearer {INFERENCE_KEY}", "X-API-Key": ADMIN_KEY},
    ],
)
async def test_two_different_keys_are_refused_even_when_one_is_valid(
    apps: dict[str, FastAPI], headers: dict[str, str]
) -> None:
    response = await call(apps["production"], "GET", "/v1/models", headers)
    assert "more than one API key" in assert_envelope(response, 401, "invalid_api_key")["message"]


async def test_the_same_key_in_both_headers_is_one_key(apps: dict[str, FastAPI]) -> None:
    headers = {"Authorization": f"Bearer {INFERENCE_KEY}", "X-API-Key": INFERENCE_KEY}
    assert (await call(apps["production"], "GET", "/v1/models", headers)).status_code == 200


async def test_a_refused_request_is_counted_under_its_route(apps: dict[str, FastAPI]) -> None:
    app = apps["production"]
    await call(app, "GET", "/api/models", {})
    await call(app, "GET", "/metrics", {"X-API-Key": INFERENCE_KEY})
    exposition = app.state.metrics.exposition().decode()
    assert 'route="/api/models",status="401"' in exposition
    assert 'route="/metrics",status="403"' in exposition
