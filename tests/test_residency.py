"""Residency: a memory budget, least recently used eviction of idle models only, pinned
entries, keep-alive per entry and per request, and a 503 when nothing can make room."""

from __future__ import annotations

import asyncio
import mmap
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ai_orchestrator.api.app import create_app
from ai_orchestrator.backends.base import Classification, ModelHandle
from ai_orchestrator.backends.onnx import OnnxBackend
from ai_orchestrator.catalogue import CatalogueEntry, load_catalogue
from ai_orchestrator.errors import MemoryBudgetExceeded
from ai_orchestrator.lifecycle import ModelManager
from ai_orchestrator.model_state import ModelState
from ai_orchestrator.settings import Environment, Settings
from tests.conftest import DIGITS, assert_envelope, default_entries

MIB = 1024 * 1024
BALLAST = 16 * MIB
ROW = [[0.0] * 64]
NAMES = ["digits-a", "digits-b", "digits-c"]
# Unloads run in worker threads, where an assertion would only be logged: noted here.
VIOLATIONS: list[str] = []


class BallastHandle(ModelHandle):
    """A real ONNX classifier that also holds, and declares, a known amount of memory, so
    that budgets in tests are exact; it fails loudly if used after or during its unload."""

    def __init__(self, inner: ModelHandle) -> None:
        self.inner: ModelHandle | None = inner
        self.ballast = mmap.mmap(-1, BALLAST)
        for offset in range(0, BALLAST, mmap.PAGESIZE):
            self.ballast[offset] = 1
        self.active = 0

    def footprint_bytes(self) -> int:
        return BALLAST

    def classify(self, rows: np.ndarray) -> Classification:
        assert self.inner is not None, "used after unload"
        self.active += 1
        try:
            return self.inner.classify(rows)
        finally:
            self.active -= 1

    def unload(self) -> None:
        if self.active:
            VIOLATIONS.append("evicted while serving")
        assert self.inner is not None
        self.inner.unload()
        self.inner = None
        self.ballast.close()


class BallastBackend(OnnxBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.unloads = 0

    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        handle = BallastHandle(super().load(entry, path))
        original = handle.unload

        def counted() -> None:
            original()
            self.unloads += 1

        handle.unload = counted  # type: ignore[method-assign]
        return handle


def digits_entries(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    (digits,) = [entry for entry in default_entries() if entry["id"] == DIGITS]
    return [{**digits, "id": name, **changes.get(name, {})} for name in NAMES]


@pytest.fixture(scope="module", autouse=True)
def warm_onnxruntime() -> None:
    """Load ONNX Runtime once, so that its own start-up memory is not billed to a model."""
    path = Path(__file__).resolve().parent.parent / "models" / "digits-classifier.onnx"
    entry = CatalogueEntry.model_validate({**digits_entries()[0], "path": path.name})
    OnnxBackend(Settings(env=Environment.TEST)).load(entry, path).unload()


@pytest.fixture
def budgeted(
    model_dir: Path, write_catalogue: Callable[[list[dict[str, Any]]], Path]
) -> Callable[..., Settings]:
    def make(
        budget_mib: float, entries: list[dict[str, Any]] | None = None, **extra: Any
    ) -> Settings:
        return Settings(
            env=Environment.TEST,
            catalogue=write_catalogue(entries or digits_entries()),
            model_dir=model_dir,
            memory_budget_mb=budget_mib,
            **{"load_wait_s": 30, **extra},
        )

    return make


def manager_for(settings: Settings) -> tuple[ModelManager, BallastBackend]:
    manager = ModelManager(load_catalogue(settings.catalogue, settings.model_dir), settings)
    backend = BallastBackend(settings)
    manager._backends["onnxruntime"] = backend
    return manager, backend


async def classify(manager: ModelManager, model_id: str) -> list[int]:
    async with manager.use(model_id) as handle:
        await asyncio.sleep(0)
        return handle.classify(np.zeros((1, 64), dtype=np.float32)).labels


def states(manager: ModelManager) -> dict[str, ModelState]:
    return {status.id: status.state for status in manager.statuses()}


async def test_load_measures_the_footprint_of_the_model(
    budgeted: Callable[..., Settings], model_dir: Path
) -> None:
    settings = budgeted(1000)
    manager = ModelManager(load_catalogue(settings.catalogue, settings.model_dir), settings)
    status = await manager.load("digits-a")
    assert status.memory_bytes is not None
    assert status.memory_bytes >= (model_dir / "digits-classifier.onnx").stat().st_size
    assert manager.resident_bytes() == status.memory_bytes
    await manager.close()


async def test_load_over_budget_evicts_the_least_recently_used_idle_model(
    budgeted: Callable[..., Settings],
) -> None:
    manager, _ = manager_for(budgeted(2.5 * BALLAST / MIB))
    await manager.load("digits-a")
    await manager.load("digits-b")
    await classify(manager, "digits-a")  # digits-b is now the least recently used
    await classify(manager, "digits-c")
    assert states(manager) == {
        "digits-a": ModelState.READY,
        "digits-b": ModelState.UNLOADED,
        "digits-c": ModelState.READY,
    }
    assert manager.resident_bytes() <= manager.budget_bytes
    assert [manager.status(m).evictions for m in ("digits-a", "digits-b")] == [0, 1]
    await manager.close()


async def test_serving_model_is_not_evicted_and_the_load_gets_a_503(
    budgeted: Callable[..., Settings],
) -> None:
    manager, _ = manager_for(budgeted(1.5 * BALLAST / MIB, load_wait_s=0.3))
    release = asyncio.Event()

    async def long_request() -> None:
        async with manager.use("digits-a"):
            await release.wait()

    holder = asyncio.create_task(long_request())
    while manager.status("digits-a").in_flight == 0:
        await asyncio.sleep(0.01)
    with pytest.raises(MemoryBudgetExceeded, match="loading or serving") as caught:
        await classify(manager, "digits-b")
    assert caught.value.headers["Retry-After"]
    assert manager.status("digits-a").state is ModelState.READY
    release.set()
    await holder
    assert await classify(manager, "digits-b")  # room once digits-a is idle
    assert manager.status("digits-a").state is ModelState.UNLOADED
    await manager.close()


async def test_pinned_model_is_never_evicted(budgeted: Callable[..., Settings]) -> None:
    entries = digits_entries(**{"digits-a": {"pinned": True}})
    manager, _ = manager_for(budgeted(1.5 * BALLAST / MIB, entries))
    await classify(manager, "digits-a")
    with pytest.raises(MemoryBudgetExceeded, match="pinned"):
        await classify(manager, "digits-b")
    assert manager.status("digits-a").state is ModelState.READY
    await manager.close()


async def test_eviction_under_a_tiny_budget_loses_no_request_and_spares_busy_models(
    budgeted: Callable[..., Settings],
) -> None:
    manager, backend = manager_for(budgeted(2.5 * BALLAST / MIB))
    chooser = random.Random(4)
    requests = [classify(manager, chooser.choice(NAMES)) for _ in range(90)]
    results = await asyncio.gather(*requests)
    # A request on an unloaded handle would have raised: every one of the 90 answered.
    assert all(labels == results[0] for labels in results)
    assert backend.unloads > 0
    assert VIOLATIONS == []
    assert manager.resident_bytes() <= manager.budget_bytes
    await manager.close()


async def test_idle_model_unloads_after_the_keep_alive_of_its_entry(
    budgeted: Callable[..., Settings],
) -> None:
    entries = digits_entries(**{"digits-a": {"keep_alive_s": 0.05}})
    manager, _ = manager_for(budgeted(0, entries))
    await classify(manager, "digits-a")
    await classify(manager, "digits-b")
    await wait_until(lambda: manager.status("digits-a").state is ModelState.UNLOADED)
    assert manager.status("digits-b").state is ModelState.READY
    await manager.close()


async def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def budget_client(budgeted: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    entries = digits_entries(**{"digits-a": {"pinned": True}})
    app = create_app(budgeted(1.5 * BALLAST / MIB, entries))
    app.state.orchestrator.models._backends["onnxruntime"] = BallastBackend(
        app.state.orchestrator.settings
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_no_room_is_a_503_with_retry_after_in_the_envelope(
    budget_client: httpx.AsyncClient,
) -> None:
    first = await budget_client.post("/api/inference", json={"model_id": "digits-a", "inputs": ROW})
    assert first.status_code == 200
    refused = await budget_client.post(
        "/api/inference", json={"model_id": "digits-b", "inputs": ROW}
    )
    assert_envelope(refused, 503, "memory_budget_exceeded")
    assert refused.headers["retry-after"]


async def test_keep_alive_of_a_request_unloads_the_model_after_it(
    client: httpx.AsyncClient,
) -> None:
    body = {"model_id": DIGITS, "inputs": ROW, "keep_alive": 0}
    assert (await client.post("/api/inference", json=body)).status_code == 200

    async def state() -> str:
        status: str = (await client.get(f"/api/models/{DIGITS}/status")).json()["state"]
        return status

    for _ in range(200):
        if await state() == "unloaded":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the model stayed loaded after a request with keep_alive 0")


async def test_keep_alive_of_an_open_inference_protocol_request_is_honoured(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32", "data": ROW[0]}],
        "parameters": {"keep_alive": 0},
    }
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=body)
    assert response.status_code == 200, response.text
    for _ in range(200):
        if (await client.get(f"/api/models/{DIGITS}/status")).json()["state"] == "unloaded":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the model stayed loaded after a request with keep_alive 0")


async def test_model_list_reports_the_budget_and_what_is_resident(
    budget_client: httpx.AsyncClient,
) -> None:
    await budget_client.post("/api/inference", json={"model_id": "digits-a", "inputs": ROW})
    body = (await budget_client.get("/api/models")).json()
    assert body["residency"] == {"budget_bytes": int(1.5 * BALLAST), "resident_bytes": BALLAST}
    assert [model["pinned"] for model in body["models"]] == [True, False, False]


async def test_eviction_over_http_under_concurrent_traffic_loses_no_request(
    budgeted: Callable[..., Settings],
) -> None:
    app = create_app(budgeted(2.5 * BALLAST / MIB))
    backend = BallastBackend(app.state.orchestrator.settings)
    app.state.orchestrator.models._backends["onnxruntime"] = backend
    chooser = random.Random(5)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/api/inference",
                        json={"model_id": chooser.choice(NAMES), "inputs": ROW},
                    )
                    for _ in range(60)
                )
            )
    assert [r.status_code for r in responses] == [200] * 60
    assert backend.unloads > 0
    assert VIOLATIONS == []
