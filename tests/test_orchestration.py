"""Orchestrated inference on real backends: strategies, fallback, routes, batch, parallel
and ensembles, with a second digits classifier of another algorithm trained here."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from ai_orchestrator.api.app import create_app
from ai_orchestrator.catalogue import load_catalogue
from ai_orchestrator.errors import CatalogueError
from ai_orchestrator.orchestration import run_all
from ai_orchestrator.service import Orchestrator
from ai_orchestrator.settings import Environment, Settings
from tests.conftest import DIGITS, MODELS, GatedBackend, assert_envelope, default_entries

LOGREG = "digits-logreg"
HELDOUT = json.loads((MODELS / "digits-classifier.heldout.json").read_text())
ROWS = HELDOUT["inputs"][:20]
LABELS = HELDOUT["labels"][:20]


@pytest.fixture(scope="session")
def logreg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logistic regression on the same digits. Trained here rather than pinned in the
    default catalogue: its training goes through BLAS, so its bytes differ across CPUs."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    model = LogisticRegression(max_iter=2000).fit(x / 16.0, y)
    # Scale inside the model so that it takes the same raw 0-16 pixels as the forest.
    model.coef_ = model.coef_ / 16.0
    onx = to_onnx(model, x[:1], options={"zipmap": False}, target_opset=17)
    path = tmp_path_factory.mktemp("logreg") / "digits-logreg.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


def orchestration_entries(logreg: Path) -> list[dict[str, Any]]:
    (forest,) = [entry for entry in default_entries() if entry["id"] == DIGITS]
    second = {
        **forest,
        "id": LOGREG,
        "path": logreg.name,
        "sha256": hashlib.sha256(logreg.read_bytes()).hexdigest(),
        "metadata": {"accuracy": 0.95, "cost": 0.005},
    }
    return [*default_entries(), second]


ROUTES = [
    {
        "name": "digits",
        "task": "classification",
        "candidates": [DIGITS, LOGREG],
        "strategy": "accuracy",
    }
]


@pytest.fixture
def orchestration_settings(
    model_dir: Path,
    logreg_file: Path,
    write_catalogue: Callable[[list[dict[str, Any]]], Path],
) -> Settings:
    (model_dir / logreg_file.name).write_bytes(logreg_file.read_bytes())
    path = write_catalogue(orchestration_entries(logreg_file))
    document = {"models": orchestration_entries(logreg_file), "routes": ROUTES}
    path.write_text(json.dumps(document))  # JSON is YAML too, and the routes go with it
    return Settings(env=Environment.TEST, catalogue=path, model_dir=model_dir, load_wait_s=30)


@pytest.fixture
async def app(orchestration_settings: Settings) -> AsyncIterator[FastAPI]:
    """conftest's ``client`` fixture talks to this app in this module."""
    application = create_app(orchestration_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def api(client: httpx.AsyncClient) -> httpx.AsyncClient:
    return client


def core_of(app: FastAPI) -> Orchestrator:
    core: Orchestrator = app.state.orchestrator
    return core


async def orchestrate(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post(
        "/api/inference/orchestrated", json={"task": "classification", "inputs": ROWS, **body}
    )


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_accuracy_strategy_answers_with_the_most_accurate_declared_model(
    api: httpx.AsyncClient,
) -> None:
    body = (await orchestrate(api, strategy="accuracy")).json()
    assert body["model_id"] == DIGITS
    assert body["candidates"] == [DIGITS, LOGREG]
    assert body["passed_over"] == []
    labels = body["outputs"]["labels"]
    assert sum(a == b for a, b in zip(labels, LABELS, strict=True)) >= 18


async def test_cost_strategy_answers_with_the_cheapest_declared_model(
    api: httpx.AsyncClient,
) -> None:
    body = (await orchestrate(api, strategy="cost")).json()
    assert body["model_id"] == LOGREG


async def test_latency_strategy_uses_the_medians_the_service_measured(
    api: httpx.AsyncClient, app: FastAPI
) -> None:
    for model_id in (DIGITS, LOGREG):
        await api.post("/api/inference", json={"model_id": model_id, "inputs": ROWS})
    latency = core_of(app).latency
    assert latency.p50(DIGITS) is not None
    assert latency.p50(LOGREG) is not None
    for _ in range(50):  # make the forest look slow
        latency.record(DIGITS, 1.0)
    assert (await orchestrate(api, strategy="latency")).json()["model_id"] == LOGREG


async def test_fallback_answers_when_the_primary_model_file_is_corrupt(
    api: httpx.AsyncClient, model_dir: Path
) -> None:
    corrupt(model_dir / "digits-classifier.onnx")
    response = await orchestrate(api, strategy="accuracy")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == LOGREG
    (passed,) = body["passed_over"]
    assert passed["model_id"] == DIGITS
    assert passed["code"] == "model_load_failed"
    assert "sha256" in passed["reason"]


async def test_named_route_picks_its_candidates_and_strategy(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/inference/orchestrated", json={"route": "digits", "inputs": ROWS}
    )
    body = response.json()
    assert (body["model_id"], body["strategy"]) == (DIGITS, "accuracy")


async def test_a_route_with_candidates_of_its_own_is_refused(api: httpx.AsyncClient) -> None:
    body = {"route": "digits", "candidates": [DIGITS], "inputs": ROWS}
    response = await api.post("/api/inference/orchestrated", json=body)
    assert assert_envelope(response, 400, "invalid_input")["param"] == "candidates"


async def test_an_unknown_route_is_named_once(api: httpx.AsyncClient) -> None:
    body = {"route": "route:nope", "inputs": ROWS}
    response = await api.post("/api/inference/orchestrated", json=body)
    error = assert_envelope(response, 404, "model_not_found")
    assert error["message"] == "route 'nope' is not in the catalogue"


async def test_when_every_candidate_fails_the_answer_is_a_503_naming_them(
    api: httpx.AsyncClient, model_dir: Path
) -> None:
    corrupt(model_dir / "digits-classifier.onnx")
    corrupt(model_dir / "digits-logreg.onnx")
    error = assert_envelope(await orchestrate(api), 503, "no_candidate_answered")
    assert DIGITS in error["message"]
    assert LOGREG in error["message"]


async def test_bad_input_is_a_400_without_trying_other_candidates(
    api: httpx.AsyncClient,
) -> None:
    assert_envelope(await orchestrate(api, inputs=[["x"]]), 400, "invalid_input")


async def test_batch_returns_results_in_input_order_and_reports_a_bad_item_alone(
    api: httpx.AsyncClient,
) -> None:
    items = [[row] for row in ROWS[:5]]
    items.insert(2, [[1.0, 2.0]])
    response = await api.post("/api/inference/batch", json={"model_id": DIGITS, "inputs": items})
    results = response.json()["results"]
    assert len(results) == 6
    error = results[2]["error"]
    # The one envelope's fields, inside the answer.
    assert error["code"] == "invalid_input"
    assert error["type"] == "invalid_request_error"
    assert error["request_id"] == response.headers["x-request-id"]
    assert set(error) == {"code", "message", "request_id", "type", "param"}
    good = [result["outputs"]["labels"][0] for result in results if "outputs" in result]
    assert good == await _labels(api, DIGITS, ROWS[:5])


async def _labels(api: httpx.AsyncClient, model_id: str, rows: list[Any]) -> list[int]:
    body = (await api.post("/api/inference", json={"model_id": model_id, "inputs": rows})).json()
    labels: list[int] = body["outputs"]["labels"]
    return labels


async def test_parallel_runs_one_input_on_several_models_side_by_side(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/api/inference/parallel", json={"model_ids": [DIGITS, LOGREG], "inputs": ROWS}
    )
    results = response.json()["results"]
    assert [result["model_id"] for result in results] == [DIGITS, LOGREG]
    assert all(len(result["outputs"]["labels"]) == len(ROWS) for result in results)


@pytest.mark.parametrize("method", ["vote", "average"])
async def test_ensemble_combines_every_member(api: httpx.AsyncClient, method: str) -> None:
    response = await api.post(
        "/api/inference/ensemble",
        json={"model_ids": [DIGITS, LOGREG], "inputs": ROWS, "method": method},
    )
    body = response.json()
    assert [m["status"] for m in body["members"]] == ["included", "included"]
    labels = body["outputs"]["labels"]
    assert sum(a == b for a, b in zip(labels, LABELS, strict=True)) >= 18
    if method == "average":
        assert all(abs(sum(row) - 1) < 1e-3 for row in body["outputs"]["probabilities"])


async def test_ensemble_leaves_out_and_names_a_member_that_misses_its_deadline(
    api: httpx.AsyncClient, app: FastAPI
) -> None:
    core = core_of(app)
    await core.models.load(DIGITS)
    gated = GatedBackend(core.settings)
    core.models._backends["onnxruntime"] = gated  # the logreg's load now waits
    try:
        response = await api.post(
            "/api/inference/ensemble",
            json={"model_ids": [DIGITS, LOGREG], "inputs": ROWS, "deadline_ms": 200},
        )
    finally:
        gated.gate.set()
    body = response.json()
    assert response.status_code == 200, body
    members = {m["model_id"]: m for m in body["members"]}
    assert members[DIGITS]["status"] == "included"
    assert members[LOGREG]["status"] == "late"
    assert len(body["outputs"]["labels"]) == len(ROWS)


def test_catalogue_refuses_a_route_whose_candidate_has_another_task(tmp_path: Path) -> None:
    document = {
        "models": default_entries(),
        "routes": [{"name": "bad", "task": "chat", "candidates": [DIGITS]}],
    }
    path = tmp_path / "catalogue.yaml"
    path.write_text(json.dumps(document))
    with pytest.raises(CatalogueError, match="route 'bad'"):
        load_catalogue(path, tmp_path)


async def test_a_cancelled_run_cancels_every_call_it_started() -> None:
    stopped: list[int] = []

    async def slow(index: int) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(index)
            raise

    run = asyncio.create_task(run_all([(str(i), slow(i)) for i in range(3)]))
    await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(stopped) == [0, 1, 2]
