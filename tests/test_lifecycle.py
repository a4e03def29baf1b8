from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ai_orchestrator.catalogue import load_catalogue
from ai_orchestrator.errors import ModelLoadFailed, ModelNotReady
from ai_orchestrator.lifecycle import ModelManager
from ai_orchestrator.model_state import ModelState
from ai_orchestrator.settings import Settings
from tests.conftest import DIGITS, GatedBackend, default_entries

ROW = np.zeros((1, 64), dtype=np.float32)


@pytest.fixture
def manager(settings: Settings) -> ModelManager:
    return ModelManager(load_catalogue(settings.catalogue, settings.model_dir), settings)


def gate(manager: ModelManager) -> GatedBackend:
    backend = GatedBackend(manager.settings)
    manager._backends["onnxruntime"] = backend
    return backend


async def wait_for_state(manager: ModelManager, model_id: str, state: ModelState) -> None:
    for _ in range(500):
        if manager.status(model_id).state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{model_id} never reached {state}")


async def test_load_makes_model_ready_and_unload_returns_it_to_unloaded(
    manager: ModelManager,
) -> None:
    status = await manager.load(DIGITS)
    assert status.state is ModelState.READY
    assert status.load_seconds is not None
    status = await manager.unload(DIGITS)
    assert status.state is ModelState.UNLOADED


async def test_load_refuses_model_whose_hash_differs(
    manager: ModelManager, model_dir: Path
) -> None:
    path = model_dir / "digits-classifier.onnx"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadFailed, match="sha256"):
        await manager.load(DIGITS)
    status = manager.status(DIGITS)
    assert status.state is ModelState.FAILED
    assert status.error is not None
    assert "refusing to load" in status.error


async def test_load_refuses_missing_file(manager: ModelManager, model_dir: Path) -> None:
    (model_dir / "digits-classifier.onnx").unlink()
    with pytest.raises(ModelLoadFailed, match="missing"):
        await manager.load(DIGITS)


async def test_failed_model_loads_on_next_request_once_its_file_is_fixed(
    manager: ModelManager, model_dir: Path
) -> None:
    path = model_dir / "digits-classifier.onnx"
    good = path.read_bytes()
    path.write_bytes(b"not a model")
    with pytest.raises(ModelLoadFailed):
        await manager.load(DIGITS)
    path.write_bytes(good)
    async with manager.use(DIGITS) as handle:
        assert handle.classify(ROW).labels


async def test_concurrent_requests_share_one_load(manager: ModelManager) -> None:
    backend = gate(manager)

    async def classify() -> list[int]:
        async with manager.use(DIGITS) as handle:
            return handle.classify(ROW).labels

    requests = [asyncio.create_task(classify()) for _ in range(5)]
    await wait_for_state(manager, DIGITS, ModelState.LOADING)
    backend.gate.set()
    results = await asyncio.gather(*requests)
    assert backend.loads == 1
    assert all(labels == results[0] for labels in results)


async def test_request_for_loading_model_gives_up_after_the_wait(settings: Settings) -> None:
    impatient = settings.model_copy(update={"load_wait_s": 0.2})
    manager = ModelManager(load_catalogue(settings.catalogue, settings.model_dir), impatient)
    backend = gate(manager)
    with pytest.raises(ModelNotReady, match="did not become ready"):
        async with manager.use(DIGITS):
            pass
    backend.gate.set()
    await wait_for_state(manager, DIGITS, ModelState.READY)


async def test_health_of_event_loop_is_kept_while_a_model_loads(manager: ModelManager) -> None:
    backend = gate(manager)
    loading = asyncio.create_task(manager.load(DIGITS))
    await wait_for_state(manager, DIGITS, ModelState.LOADING)
    # The loop still runs other work: this sleep returns while the load is blocked.
    await asyncio.wait_for(asyncio.sleep(0.05), 1)
    backend.gate.set()
    assert (await loading).state is ModelState.READY


async def test_unload_waits_for_in_flight_requests(manager: ModelManager) -> None:
    await manager.load(DIGITS)
    release = asyncio.Event()
    used: list[Any] = []

    async def long_request() -> None:
        async with manager.use(DIGITS) as handle:
            await release.wait()
            used.append(handle.classify(ROW).labels)

    request = asyncio.create_task(long_request())
    await asyncio.sleep(0.01)
    unloading = asyncio.create_task(manager.unload(DIGITS))
    await wait_for_state(manager, DIGITS, ModelState.UNLOADING)
    assert not unloading.done()
    release.set()
    await request
    assert (await unloading).state is ModelState.UNLOADED
    assert used, "the in-flight request finished on a loaded model"


async def test_request_during_unload_waits_and_reloads(manager: ModelManager) -> None:
    await manager.load(DIGITS)
    release = asyncio.Event()

    async def holder() -> None:
        async with manager.use(DIGITS):
            await release.wait()

    held = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    unloading = asyncio.create_task(manager.unload(DIGITS))
    await wait_for_state(manager, DIGITS, ModelState.UNLOADING)

    async def late_request() -> list[int]:
        async with manager.use(DIGITS) as handle:
            return handle.classify(ROW).labels

    late = asyncio.create_task(late_request())
    release.set()
    await asyncio.gather(held, unloading)
    assert len(await late) == 1


async def test_close_unloads_every_model(manager: ModelManager) -> None:
    await manager.load(DIGITS)
    await manager.close()
    assert all(status.state is ModelState.UNLOADED for status in manager.statuses())


def test_every_default_entry_has_a_state(manager: ModelManager) -> None:
    assert {status.id for status in manager.statuses()} == {e["id"] for e in default_entries()}
