"""Model lifecycle: unloaded -> loading -> ready (or failed) -> unloaded.

All state changes happen on the event loop under one condition per model; the slow
parts (hashing the file, the backend's load and unload) run in worker threads so that
health checks keep answering while a model loads. A request that finds its model
loading waits for it up to ``load_wait_s``; an unload waits for in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

from ai_orchestrator.backends import resolve_backend
from ai_orchestrator.backends.base import Backend, ModelHandle
from ai_orchestrator.catalogue import Catalogue, CatalogueEntry, sha256_file
from ai_orchestrator.errors import ModelLoadFailed, ModelNotReady, OrchestratorError, QueueFull
from ai_orchestrator.logs import model_context
from ai_orchestrator.memory import resident_bytes
from ai_orchestrator.settings import Settings

log = logging.getLogger("ai_orchestrator.lifecycle")


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


@dataclass
class ModelStatus:
    """A snapshot of one model's lifecycle, as reported by the API."""

    id: str
    state: ModelState
    in_flight: int
    error: str | None
    load_seconds: float | None
    memory_bytes: int | None
    loaded_at: float | None


class _Slot:
    def __init__(self, entry: CatalogueEntry) -> None:
        self.entry = entry
        self.state = ModelState.UNLOADED
        self.handle: ModelHandle | None = None
        self.error: str | None = None
        self.in_flight = 0
        self.load_seconds: float | None = None
        self.memory_bytes: int | None = None
        self.loaded_at: float | None = None
        self.changed = asyncio.Condition()
        self.load_task: asyncio.Task[None] | None = None


class ModelManager:
    """Owns every model's state and handle. Only used from the event loop's thread."""

    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue = catalogue
        self.settings = settings
        self._slots = {entry.id: _Slot(entry) for entry in catalogue}
        self._backends: dict[str, Backend] = {}

    def status(self, model_id: str) -> ModelStatus:
        slot = self._slot(model_id)
        return ModelStatus(
            id=model_id,
            state=slot.state,
            in_flight=slot.in_flight,
            error=slot.error,
            load_seconds=slot.load_seconds,
            memory_bytes=slot.memory_bytes,
            loaded_at=slot.loaded_at,
        )

    def statuses(self) -> list[ModelStatus]:
        return [self.status(model_id) for model_id in self._slots]

    def is_ready(self, model_id: str) -> bool:
        return self._slot(model_id).state is ModelState.READY

    async def load(self, model_id: str) -> ModelStatus:
        """Load the model if needed and wait until it is ready; raise if the load fails."""
        slot = self._slot(model_id)
        async with slot.changed:
            await self._ensure_ready(slot, deadline=None)
        return self.status(model_id)

    async def unload(self, model_id: str) -> ModelStatus:
        """Unload after in-flight requests finish; new requests wait until it is done."""
        slot = self._slot(model_id)
        async with slot.changed:
            if slot.state is ModelState.LOADING:
                await slot.changed.wait_for(lambda: slot.state is not ModelState.LOADING)
            if slot.state is not ModelState.READY:
                if slot.state is ModelState.FAILED:
                    slot.state, slot.error = ModelState.UNLOADED, None
                return self.status(model_id)
            slot.state = ModelState.UNLOADING
            await slot.changed.wait_for(lambda: slot.in_flight == 0)
            handle, slot.handle = slot.handle, None
        try:
            if handle is not None:
                await asyncio.to_thread(handle.unload)
        finally:
            async with slot.changed:
                slot.state = ModelState.UNLOADED
                slot.memory_bytes = slot.loaded_at = None
                slot.changed.notify_all()
        with model_context(model_id):
            log.info("model unloaded", extra={"event": "model_unloaded"})
        return self.status(model_id)

    @asynccontextmanager
    async def use(self, model_id: str) -> AsyncIterator[ModelHandle]:
        """Hold the model for one request, loading it on demand.

        While held, the model is counted in flight and will not be unloaded. A model
        already holding ``queue_size`` requests refuses more with QueueFull.
        """
        slot = self._slot(model_id)
        if slot.in_flight >= self.settings.queue_size:
            raise QueueFull(
                f"model {model_id!r} already holds {slot.in_flight} requests, the limit "
                "(AIO_QUEUE_SIZE); retry later"
            )
        if slot.state is not ModelState.READY:
            deadline = time.monotonic() + self.settings.load_wait_s
            async with slot.changed:
                await self._ensure_ready(slot, deadline)
        # From the check above to this increment nothing awaits, so on the event loop
        # the model cannot start unloading in between; the lock is only for waiting.
        slot.in_flight += 1
        handle = slot.handle
        assert handle is not None
        try:
            yield handle
        finally:
            slot.in_flight -= 1
            if slot.state is ModelState.UNLOADING and slot.in_flight == 0:
                async with slot.changed:
                    slot.changed.notify_all()

    async def close(self) -> None:
        """Unload every model; used at shutdown."""
        for model_id, slot in self._slots.items():
            if slot.load_task is not None:
                await asyncio.gather(slot.load_task, return_exceptions=True)
            await self.unload(model_id)

    def _slot(self, model_id: str) -> _Slot:
        self.catalogue.get(model_id)  # raises ModelNotFound with the usual message
        return self._slots[model_id]

    async def _ensure_ready(self, slot: _Slot, deadline: float | None) -> None:
        """With ``slot.changed`` held: start a load if needed and wait for its outcome."""
        attempted = False
        while slot.state is not ModelState.READY:
            if slot.state is ModelState.FAILED and attempted:
                raise ModelLoadFailed(slot.error or f"model {slot.entry.id!r} failed to load")
            if slot.state in (ModelState.UNLOADED, ModelState.FAILED):
                # A failed model is tried again on the next request: its file may be fixed.
                backend = self._backend(slot.entry.backend)
                slot.state, slot.error = ModelState.LOADING, None
                slot.load_task = asyncio.create_task(self._load(slot, backend))
            attempted = attempted or slot.state is ModelState.LOADING
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ModelNotReady(f"model {slot.entry.id!r} is not ready yet ({slot.state})")
            try:
                await asyncio.wait_for(slot.changed.wait(), remaining)
            except TimeoutError:
                raise ModelNotReady(
                    f"model {slot.entry.id!r} did not become ready within "
                    f"{self.settings.load_wait_s:g} s"
                ) from None

    async def _load(self, slot: _Slot, backend: Backend) -> None:
        """Runs as its own task, so a request that gives up waiting does not cancel it."""
        entry = slot.entry
        started = time.perf_counter()
        before = resident_bytes()
        try:
            handle = await asyncio.to_thread(self._load_sync, entry, backend)
        except Exception as exc:
            message = exc.message if isinstance(exc, OrchestratorError) else repr(exc)
            async with slot.changed:
                slot.state, slot.error, slot.load_task = ModelState.FAILED, message, None
                slot.changed.notify_all()
            with model_context(entry.id):
                log.error("model load failed: %s", message, extra={"event": "model_failed"})
            return
        seconds = time.perf_counter() - started
        async with slot.changed:
            slot.handle, slot.state, slot.load_task = handle, ModelState.READY, None
            slot.load_seconds, slot.loaded_at = round(seconds, 3), time.time()
            slot.memory_bytes = max(resident_bytes() - before, 0)
            slot.changed.notify_all()
        with model_context(entry.id):
            log.info(
                "model loaded backend=%s seconds=%.3f",
                entry.backend,
                seconds,
                extra={"event": "model_loaded", "backend": entry.backend, "seconds": seconds},
            )

    def _load_sync(self, entry: CatalogueEntry, backend: Backend) -> ModelHandle:
        path = self.catalogue.file_of(entry)
        if not path.is_file():
            raise ModelLoadFailed(f"model {entry.id!r}: file {entry.path} is missing")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ModelLoadFailed(
                f"model {entry.id!r}: file {entry.path} has sha256 {actual}, the catalogue "
                f"expects {entry.sha256}; refusing to load it"
            )
        return backend.load(entry, path)

    def _backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = resolve_backend(name)(self.settings)
        return self._backends[name]
