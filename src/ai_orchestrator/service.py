"""The orchestrator's core: run a request on a catalogue model, whatever the protocol.

The HTTP adapters translate their wire formats into these calls and back. Nothing here
knows about HTTP. Backend calls are blocking, so they run in worker threads.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np

from ai_orchestrator.backends.base import Classification, Embeddings, Generation, ModelHandle
from ai_orchestrator.batching import Batcher, ClassifyKind, Item, Kind, Result, TensorKind
from ai_orchestrator.catalogue import Catalogue, CatalogueEntry, Task
from ai_orchestrator.errors import InvalidInput, UnsupportedTask
from ai_orchestrator.lifecycle import ModelManager
from ai_orchestrator.limits import check_texts, prepare_generation
from ai_orchestrator.logs import model_id_var
from ai_orchestrator.settings import Settings

GENERATION_TASKS = frozenset({Task.CHAT, Task.TEXT_GENERATION})
_END = object()


class LatencyStats:
    """Recent request latencies per model; their median drives the latency strategy."""

    def __init__(self, window: int = 200) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._window = window

    def record(self, model_id: str, seconds: float) -> None:
        samples = self._samples.setdefault(model_id, deque(maxlen=self._window))
        samples.append(seconds)

    def p50(self, model_id: str) -> float | None:
        samples = self._samples.get(model_id)
        return statistics.median(samples) if samples else None

    @contextmanager
    def timing(self, model_id: str) -> Iterator[None]:
        """Record the block's duration if it finishes without an error."""
        started = time.perf_counter()
        yield
        self.record(model_id, time.perf_counter() - started)


class Orchestrator:
    """Everything a protocol adapter needs: the catalogue, model lifecycle and inference."""

    def __init__(self, settings: Settings, catalogue: Catalogue) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.models = ModelManager(catalogue, settings)
        self.latency = LatencyStats()
        # The batchers of each loaded handle, one per kind; they go when the handle is
        # unloaded and dropped.
        self._batchers: weakref.WeakKeyDictionary[ModelHandle, dict[object, Batcher[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def unready_preloads(self) -> dict[str, str]:
        """The preload models that keep the service unready, with their states: those not
        yet loaded, and those whose last load failed."""
        return {
            model_id: self.models.status(model_id).state.value
            for model_id in self.settings.preload
            if not self.models.can_serve(model_id)
        }

    def entry_for(self, model_id: str, tasks: frozenset[Task] | None = None) -> CatalogueEntry:
        entry = self.catalogue.get(model_id)
        model_id_var.set(model_id)
        if tasks is not None and entry.task not in tasks:
            wanted = " or ".join(sorted(task.value for task in tasks))
            raise UnsupportedTask(
                f"model {model_id!r} has task {entry.task.value!r}; this call needs {wanted}"
            )
        return entry

    async def classify(
        self, model_id: str, rows: Any, keep_alive_s: float | None = None
    ) -> Classification:
        self.entry_for(model_id, frozenset({Task.CLASSIFICATION}))
        array = as_finite_matrix(rows)
        with self.latency.timing(model_id):
            async with self.models.use(model_id, keep_alive_s) as handle:
                return await self._batched(handle, ClassifyKind, array)

    async def run_tensors(
        self, model_id: str, inputs: dict[str, np.ndarray], keep_alive_s: float | None = None
    ) -> dict[str, np.ndarray]:
        self.entry_for(model_id, frozenset({Task.TENSOR, Task.CLASSIFICATION}))
        async with self.models.use(model_id, keep_alive_s) as handle:
            return await self._batched(handle, TensorKind, inputs)

    async def _batched(
        self, handle: ModelHandle, kind: Callable[[ModelHandle], Kind[Item, Result]], item: Item
    ) -> Result:
        """The call, through the handle's batcher of that kind unless batching is off."""
        if self.settings.batch_max_size <= 1:
            return await Batcher.call_alone(handle, kind(handle), item)
        batchers = self._batchers.setdefault(handle, {})
        batcher = batchers.get(kind)
        if batcher is None:
            batcher = Batcher(
                handle,
                kind(handle),
                self.settings.batch_max_size,
                self.settings.batch_max_wait_ms / 1000,
            )
            batchers[kind] = batcher
        return cast(Result, await batcher.submit(item))

    async def tensor_signature(self, model_id: str) -> tuple[list[Any], list[Any]]:
        self.entry_for(model_id, frozenset({Task.TENSOR, Task.CLASSIFICATION}))
        async with self.models.use(model_id) as handle:
            return handle.signature()

    async def generate(
        self, model_id: str, kind: str, request: dict[str, Any], keep_alive_s: float | None = None
    ) -> Generation:
        """Run a chat (``kind="chat"``) or text completion request to the end."""
        request = self._check_generation(model_id, kind, request)
        with self.latency.timing(model_id):
            async with self.models.use(model_id, keep_alive_s) as handle:
                stop = threading.Event()
                worker = asyncio.ensure_future(
                    asyncio.to_thread(handle.generate, kind, request, stop)
                )
                try:
                    return await asyncio.shield(worker)
                except asyncio.CancelledError:
                    # The caller gave up (client gone, or timed out): stop at the next
                    # token, and hold the model until the backend really has stopped.
                    stop.set()
                    await asyncio.gather(worker, return_exceptions=True)
                    raise

    async def stream(
        self, model_id: str, kind: str, request: dict[str, Any], keep_alive_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI-shaped chunks as the backend produces them.

        If the consumer stops early (the client went away), the backend is told to stop
        at its next token, so the model is free for the next request.
        """
        request = self._check_generation(model_id, kind, request)
        async with self.models.use(model_id, keep_alive_s) as handle:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = threading.Event()

            def sink(chunk: dict[str, Any]) -> bool:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
                return stop.is_set()

            def produce() -> None:
                try:
                    handle.stream(kind, request, sink)
                except BaseException as exc:  # handed to the consumer, raised there
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)

            worker = asyncio.create_task(asyncio.to_thread(produce))
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop.set()
                # Hold the model until the backend has really stopped generating.
                await asyncio.shield(worker)

    async def embed(
        self, model_id: str, texts: list[str], keep_alive_s: float | None = None
    ) -> Embeddings:
        self.entry_for(model_id, frozenset({Task.EMBEDDINGS}))
        check_texts(self.settings, texts)
        with self.latency.timing(model_id):
            async with self.models.use(model_id, keep_alive_s) as handle:
                return await asyncio.to_thread(handle.embed, texts)

    def _check_generation(
        self, model_id: str, kind: str, request: dict[str, Any]
    ) -> dict[str, Any]:
        entry = self.entry_for(model_id, GENERATION_TASKS)
        if kind == "chat" and entry.task is not Task.CHAT:
            raise UnsupportedTask(f"model {model_id!r} is not a chat model")
        return prepare_generation(self.settings, request)


def as_finite_matrix(rows: Any) -> np.ndarray:
    """Rows of numbers as a float32 matrix; refuse ragged rows, strings, NaN and Inf."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("inputs must be a non-empty list of rows of numbers")
    try:
        # No dtype given, so numpy reports what it found: strings or mixed values come
        # out as a non-numeric kind instead of being silently converted.
        array = np.array(rows)
    except ValueError:
        raise InvalidInput("inputs must be rows of equal length") from None
    if array.ndim != 2 or array.dtype.kind not in "iuf":
        raise InvalidInput("inputs must be a list of rows, each a list of numbers of equal length")
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    # Checked after the conversion: 1e39 is finite in JSON but infinite as float32.
    if not np.isfinite(single).all():
        raise InvalidInput("inputs hold NaN, Inf or values beyond float32; only finite numbers fit")
    return single
