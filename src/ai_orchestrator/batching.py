"""Adaptive dynamic batching: concurrent calls to one ONNX model become one call.

A request joins a queue and the queue is drained one step of the event loop later, so
every request that reached the model in the same step shares one backend call. A lone
request waits for nothing more than that step. Only when others are queued does the
drain wait, at most ``max_wait_s``, for the batch to fill up to ``max_rows``.

What is batched is a ``Kind``: classify calls (rows of numbers in, labels and
probabilities out) or tensor calls of the Open Inference Protocol (named tensors in and
out, batched along their first dimension).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from ai_orchestrator.backends.base import Classification, ModelHandle
from ai_orchestrator.errors import OrchestratorError

Item = TypeVar("Item")
Result = TypeVar("Result")
Tensors = dict[str, np.ndarray]


class Kind(Protocol[Item, Result]):
    """How one kind of call is batched."""

    def key(self, item: Item) -> Hashable:
        """Items share a call only when their keys are equal."""

    def rows(self, item: Item) -> int: ...

    def merge(self, items: list[Item]) -> Item: ...

    def call(self, item: Item) -> Result:
        """The backend call; blocking, run on the loop when quick, else in a thread."""

    def split(self, result: Result, sizes: list[int]) -> list[Result] | None:
        """The merged call's result cut back per item, or None when it cannot be."""


class ClassifyKind:
    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle

    def key(self, item: np.ndarray) -> Hashable:
        return item.shape[1:]

    def rows(self, item: np.ndarray) -> int:
        return len(item)

    def merge(self, items: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(items)

    def call(self, item: np.ndarray) -> Classification:
        return self.handle.classify(item)

    def split(self, result: Classification, sizes: list[int]) -> list[Classification]:
        parts, start = [], 0
        for size in sizes:
            end = start + size
            parts.append(Classification(result.labels[start:end], result.probabilities[start:end]))
            start = end
        return parts


class TensorKind:
    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle
        inputs, outputs = handle.signature()
        # Only a model whose every tensor has a free first dimension is batch-major.
        self.batch_major = bool(inputs) and all(
            spec.shape[:1] == [-1] for spec in (*inputs, *outputs)
        )

    def key(self, item: Tensors) -> Hashable:
        """Same names, types and shapes but for the first (batch) dimension, which all of
        the item's tensors share; anything else gets a key of its own and runs alone."""
        lengths = {len(value) if value.ndim else None for value in item.values()}
        if not self.batch_major or len(lengths) != 1 or None in lengths:
            return id(item)
        return tuple(sorted((n, v.dtype.str, v.shape[1:]) for n, v in item.items()))

    def rows(self, item: Tensors) -> int:
        return max((len(value) for value in item.values() if value.ndim), default=1)

    def merge(self, items: list[Tensors]) -> Tensors:
        return {name: np.concatenate([item[name] for item in items]) for name in items[0]}

    def call(self, item: Tensors) -> Tensors:
        return self.handle.run(item)

    def split(self, result: Tensors, sizes: list[int]) -> list[Tensors] | None:
        # A model whose outputs are not batch-major cannot be cut back: run alone.
        total = sum(sizes)
        if any(value.ndim == 0 or len(value) != total for value in result.values()):
            return None
        bounds = np.cumsum(sizes)[:-1]
        pieces = {name: np.split(value, bounds) for name, value in result.items()}
        return [{name: pieces[name][i] for name in result} for i in range(len(sizes))]


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    done: asyncio.Future[Result]


class Batcher(Generic[Item, Result]):
    """Gathers the calls of one kind to one loaded model. Used from the event loop only."""

    def __init__(
        self, handle: ModelHandle, kind: Kind[Item, Result], max_rows: int, max_wait_s: float
    ) -> None:
        self._handle = handle
        self._kind = kind
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._queue: list[_Pending[Item, Result]] = []
        self._drain: asyncio.Task[None] | None = None
        self._leading = False

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        pending: _Pending[Item, Result] = _Pending(item, loop.create_future())
        self._queue.append(pending)
        if self._drain is None and not self._leading:
            # The first request leads: it lets one turn of the event loop pass, so that
            # the requests that arrived in the same turn join the queue. Found alone and
            # quick, it runs itself, with no task and no second turn: at concurrency 1
            # batching costs that one turn and nothing more.
            self._leading = True
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pending.done.cancel()
                self._leading = False
                self._start_drain()  # the others still need their answers
                raise
            self._leading = False
            alone = len(self._queue) == 1 and self._queue[0] is pending
            if alone and self._handle.is_quick(self._kind.rows(item)):
                self._queue.clear()
                return self._kind.call(item)
            self._start_drain()
        # If this request is cancelled (its client left, or it timed out) while queued,
        # its future is cancelled too and the drain skips it.
        return await pending.done

    def _start_drain(self) -> None:
        if self._queue and self._drain is None:
            self._drain = asyncio.create_task(self._drain_queue())

    async def _drain_queue(self) -> None:
        try:
            while self._queue:
                queued_rows = sum(self._kind.rows(p.item) for p in self._queue)
                if len(self._queue) > 1 and queued_rows < self._max_rows and self._max_wait_s:
                    await asyncio.sleep(self._max_wait_s)
                await self._run(self._take())
        finally:
            self._drain = None

    def _take(self) -> list[_Pending[Item, Result]]:
        """The next batch: queued requests in order, all of one key, up to the row
        limit (a single request larger than the limit goes alone)."""
        batch: list[_Pending[Item, Result]] = []
        rest: list[_Pending[Item, Result]] = []
        rows = 0
        key = None
        for pending in self._queue:
            if pending.done.cancelled():
                continue
            size = self._kind.rows(pending.item)
            fits = not batch or (
                self._kind.key(pending.item) == key and rows + size <= self._max_rows
            )
            if fits:
                if not batch:
                    key = self._kind.key(pending.item)
                batch.append(pending)
                rows += size
            else:
                rest.append(pending)
        self._queue = rest
        return batch

    async def _run(self, batch: list[_Pending[Item, Result]]) -> None:
        if not batch:
            return
        kind = self._kind
        items = [pending.item for pending in batch]
        try:
            merged = items[0] if len(items) == 1 else kind.merge(items)
            result = await self.call_alone(self._handle, kind, merged)
        except Exception as exc:
            if isinstance(exc, OrchestratorError) and len(batch) > 1:
                # One bad request must not fail the others: each runs alone for its answer.
                await self._alone(batch)
                return
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        parts = [result] if len(batch) == 1 else kind.split(result, [kind.rows(i) for i in items])
        if parts is None:
            await self._alone(batch)
            return
        for pending, part in zip(batch, parts, strict=True):
            if not pending.done.done():
                pending.done.set_result(part)

    async def _alone(self, batch: list[_Pending[Item, Result]]) -> None:
        for pending in batch:
            await self._run([pending])

    @staticmethod
    async def call_alone(handle: ModelHandle, kind: Kind[Item, Result], item: Item) -> Result:
        """One backend call: on the event loop when the handle says it is quick, since a
        hop to a worker thread would cost more, else in a worker thread."""
        if handle.is_quick(kind.rows(item)):
            return kind.call(item)
        return await asyncio.to_thread(kind.call, item)
