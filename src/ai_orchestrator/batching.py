"""Adaptive dynamic batching: concurrent classify calls to one model become one call.

A request joins a queue and the queue is drained one step of the event loop later, so
every request that reached the model in the same step shares one backend call. A lone
request waits for nothing more than that step. Only when others are queued does the
drain wait, at most ``max_wait_s``, for the batch to fill up to ``max_rows``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from ai_orchestrator.backends.base import Classification, ModelHandle
from ai_orchestrator.errors import OrchestratorError


@dataclass
class _Pending:
    rows: np.ndarray
    done: asyncio.Future[Classification]


class Batcher:
    """Gathers the classify calls of one loaded model. Used from the event loop only."""

    def __init__(self, handle: ModelHandle, max_rows: int, max_wait_s: float) -> None:
        self._handle = handle
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._queue: list[_Pending] = []
        self._drain: asyncio.Task[None] | None = None

    async def classify(self, rows: np.ndarray) -> Classification:
        loop = asyncio.get_running_loop()
        pending = _Pending(rows, loop.create_future())
        self._queue.append(pending)
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_queue())
        # If this request is cancelled (its client left, or it timed out) while queued,
        # its future is cancelled too and the drain skips it.
        return await pending.done

    async def _drain_queue(self) -> None:
        try:
            while self._queue:
                queued_rows = sum(len(p.rows) for p in self._queue)
                if len(self._queue) > 1 and queued_rows < self._max_rows and self._max_wait_s:
                    await asyncio.sleep(self._max_wait_s)
                await self._run(self._take())
        finally:
            self._drain = None

    def _take(self) -> list[_Pending]:
        """The next batch: queued requests in order, all of one row width, up to the
        row limit (a single request larger than the limit goes alone)."""
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        rows = 0
        for pending in self._queue:
            if pending.done.cancelled():
                continue
            width = pending.rows.shape[1]
            fits = not batch or (
                width == batch[0].rows.shape[1] and rows + len(pending.rows) <= self._max_rows
            )
            if fits:
                batch.append(pending)
                rows += len(pending.rows)
            else:
                rest.append(pending)
        self._queue = rest
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        rows = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        try:
            result = await self._classify(rows)
        except Exception as exc:
            if isinstance(exc, OrchestratorError) and len(batch) > 1:
                # One bad request must not fail the others: each runs alone for its answer.
                for pending in batch:
                    await self._run([pending])
                return
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        if len(batch) == 1:
            if not batch[0].done.done():
                batch[0].done.set_result(result)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.rows)
            part = Classification(result.labels[start:end], result.probabilities[start:end])
            if not pending.done.done():
                pending.done.set_result(part)
            start = end

    async def _classify(self, rows: np.ndarray) -> Classification:
        if self._handle.is_quick(len(rows)):
            return self._handle.classify(rows)
        return await asyncio.to_thread(self._handle.classify, rows)
