"""Adaptive dynamic batching of classify and tensor calls on the real digits classifier."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from ai_orchestrator.backends.base import Classification, ModelHandle, TensorSpec
from ai_orchestrator.backends.onnx import OnnxBackend
from ai_orchestrator.catalogue import CatalogueEntry, load_catalogue
from ai_orchestrator.errors import InvalidInput
from ai_orchestrator.service import Orchestrator
from ai_orchestrator.settings import Settings
from tests.conftest import DIGITS, MODELS

ROWS: list[list[float]] = json.loads((MODELS / "digits-classifier.heldout.json").read_text())[
    "inputs"
][:12]


class CountingHandle(ModelHandle):
    def __init__(self, inner: ModelHandle, calls: list[int]) -> None:
        self.inner = inner
        self.calls = calls

    def classify(self, rows: np.ndarray) -> Classification:
        self.calls.append(len(rows))
        return self.inner.classify(rows)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(next(iter(inputs.values()))))
        return self.inner.run(inputs)

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self.inner.signature()

    def is_quick(self, rows: int) -> bool:
        return self.inner.is_quick(rows)

    def unload(self) -> None:
        self.inner.unload()


class CountingBackend(OnnxBackend):
    """The real ONNX backend; records the number of rows of every classify call."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls: list[int] = []

    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        return CountingHandle(super().load(entry, path), self.calls)


def orchestrator(settings: Settings, **changes: Any) -> tuple[Orchestrator, CountingBackend]:
    settings = settings.model_copy(update=changes)
    core = Orchestrator(settings, load_catalogue(settings.catalogue, settings.model_dir))
    backend = CountingBackend(settings)
    core.models._backends["onnxruntime"] = backend
    return core, backend


async def test_concurrent_requests_share_one_backend_call_with_the_same_answers(
    settings: Settings,
) -> None:
    core, backend = orchestrator(settings)
    alone = [(await core.classify(DIGITS, [row])).labels for row in ROWS]
    backend.calls.clear()
    together = await asyncio.gather(*(core.classify(DIGITS, [row]) for row in ROWS))
    assert [result.labels for result in together] == alone
    assert backend.calls == [len(ROWS)]
    await core.models.close()


async def test_batch_never_exceeds_the_maximum_size(settings: Settings) -> None:
    core, backend = orchestrator(settings, batch_max_size=5)
    await core.models.load(DIGITS)
    await asyncio.gather(*(core.classify(DIGITS, [row]) for row in ROWS))
    assert max(backend.calls) <= 5
    assert sum(backend.calls) == len(ROWS)
    await core.models.close()


async def test_lone_request_does_not_wait_for_others(settings: Settings) -> None:
    core, _ = orchestrator(settings, batch_max_wait_ms=60_000)
    await core.models.load(DIGITS)
    # With a minute of maximum wait, only the rule "no wait when nothing else is queued"
    # lets this return before the guard.
    result = await asyncio.wait_for(core.classify(DIGITS, [ROWS[0]]), 10)
    assert len(result.labels) == 1
    await core.models.close()


async def test_bad_request_in_a_batch_fails_alone(settings: Settings) -> None:
    core, _ = orchestrator(settings)
    await core.models.load(DIGITS)
    good = [core.classify(DIGITS, [row]) for row in ROWS[:4]]
    results = await asyncio.gather(
        *good, core.classify(DIGITS, [[1.0, 2.0]]), return_exceptions=True
    )
    assert all(isinstance(result, Classification) for result in results[:4])
    assert isinstance(results[4], InvalidInput)
    await core.models.close()


async def test_cancelled_request_is_dropped_from_the_queue(settings: Settings) -> None:
    core, backend = orchestrator(settings)
    await core.models.load(DIGITS)
    requests = [asyncio.create_task(core.classify(DIGITS, [row])) for row in ROWS[:6]]
    await asyncio.sleep(0)  # every request is queued, the drain has not run yet
    requests[2].cancel()
    await asyncio.gather(*requests, return_exceptions=True)
    assert sum(backend.calls) == 5
    assert core.models.status(DIGITS).in_flight == 0
    await core.models.close()


async def test_cancelled_first_request_does_not_strand_the_others(settings: Settings) -> None:
    # The first request leads the batch; cancelled while it waits for the others to
    # join, it must hand them on rather than leave them waiting for ever.
    core, backend = orchestrator(settings)
    await core.models.load(DIGITS)
    requests = [asyncio.create_task(core.classify(DIGITS, [row])) for row in ROWS[:4]]
    await asyncio.sleep(0)  # the first leads and waits a turn; the others are queued
    requests[0].cancel()
    results = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 10)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(result, Classification) for result in results[1:])
    assert backend.calls == [3]
    await core.models.close()


async def test_batching_off_runs_every_request_alone(settings: Settings) -> None:
    core, backend = orchestrator(settings, batch_max_size=1)
    await core.models.load(DIGITS)
    await asyncio.gather(*(core.classify(DIGITS, [row]) for row in ROWS[:4]))
    assert backend.calls == [1, 1, 1, 1]
    await core.models.close()


def tensors(rows: list[list[float]]) -> dict[str, np.ndarray]:
    return {"X": np.asarray(rows, dtype=np.float32)}


async def test_concurrent_tensor_calls_share_one_backend_call_with_the_same_answers(
    settings: Settings,
) -> None:
    core, backend = orchestrator(settings)
    alone = [await core.run_tensors(DIGITS, tensors([row])) for row in ROWS]
    backend.calls.clear()
    together = await asyncio.gather(*(core.run_tensors(DIGITS, tensors([row])) for row in ROWS))
    assert backend.calls == [len(ROWS)]
    for mine, theirs in zip(together, alone, strict=True):
        assert mine.keys() == theirs.keys()
        for name in mine:
            np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-6)
            assert len(mine[name]) == 1
    await core.models.close()


async def test_tensor_calls_of_other_shapes_run_apart_and_fail_alone(settings: Settings) -> None:
    core, backend = orchestrator(settings)
    await core.models.load(DIGITS)
    backend.calls.clear()
    results = await asyncio.gather(
        core.run_tensors(DIGITS, tensors(ROWS[:2])),
        core.run_tensors(DIGITS, tensors([row[:63] for row in ROWS[:3]])),
        core.run_tensors(DIGITS, tensors(ROWS[2:3])),
        return_exceptions=True,
    )
    first, wrong, last = results
    assert isinstance(wrong, InvalidInput)
    assert isinstance(first, dict)
    assert isinstance(last, dict)
    assert [len(first["label"]), len(last["label"])] == [2, 1]
    # The two well-formed calls shared one backend call of 3 rows; the 63-column one went
    # alone (and was refused), so it could not fail the others.
    assert backend.calls == [3, 3]
    await core.models.close()
