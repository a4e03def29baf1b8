"""Model lifecycle: unloaded -> loading -> ready (or failed) -> unloaded.

All state changes happen on the event loop under one condition per model; the slow
parts (hashing the file, the backend's load and unload) run in worker threads so that
health checks keep answering while a model loads. A request that finds its model
loading waits for it up to ``load_wait_s``; an unload waits for in-flight requests.

Residency: with a memory budget, a load first makes room by evicting the least recently
used idle models (ready, nothing in flight, not pinned). A model that is loading or
serving is never evicted: eviction marks its victim ``unloading`` in the same step of the
event loop in which it found it idle, so no request can start on it in between. Idle
models are also unloaded after their keep-alive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ai_orchestrator.backends import resolve_backend
from ai_orchestrator.backends.base import Backend, ModelHandle
from ai_orchestrator.catalogue import Catalogue, CatalogueEntry, sha256_file
from ai_orchestrator.errors import (
    MemoryBudgetExceeded,
    ModelLoadFailed,
    ModelNotReady,
    OrchestratorError,
    QueueFull,
)
from ai_orchestrator.logs import model_context
from ai_orchestrator.memory import resident_bytes
from ai_orchestrator.model_state import ModelState, ModelStatus, Slot
from ai_orchestrator.settings import Settings

log = logging.getLogger("ai_orchestrator.lifecycle")
BUSY = "every other model is loading or serving"
# Requests that waited for a load resume a moment after it; a keep-alive of 0 must not
# unload the model before they have started on it.
LOAD_GRACE_S = 1.0


class ModelManager:
    """Owns every model's state and handle. Only used from the event loop's thread."""

    def __init__(self, catalogue: Catalogue, settings: Settings) -> None:
        self.catalogue = catalogue
        self.settings = settings
        self._slots = {entry.id: Slot(entry) for entry in catalogue}
        self._backends: dict[str, Backend] = {}
        self.budget_bytes = int(settings.memory_budget_mb * 1024 * 1024)
        # Under a budget, loads run one at a time so that each RSS delta is its own model's.
        self._load_lock = asyncio.Lock()
        # Set whenever a model becomes idle or is unloaded: room may have appeared.
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

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
            pinned=slot.entry.pinned,
            keep_alive_s=self._keep_alive(slot),
            evictions=slot.evictions,
        )

    def resident_bytes(self) -> int:
        return sum(slot.resident_bytes for slot in self._slots.values())

    def statuses(self) -> list[ModelStatus]:
        return [self.status(model_id) for model_id in self._slots]

    def is_ready(self, model_id: str) -> bool:
        return self._slot(model_id).state is ModelState.READY

    def can_serve(self, model_id: str) -> bool:
        """Ready, or loaded before and not failed since: a request reloads it on demand."""
        slot = self._slot(model_id)
        return slot.state is ModelState.READY or (
            slot.has_loaded and slot.state is not ModelState.FAILED
        )

    async def load(self, model_id: str) -> ModelStatus:
        """Load the model if needed and wait until it is ready; raise if the load fails."""
        slot = self._slot(model_id)
        async with slot.changed:
            await self._ensure_ready(slot, deadline=None)
        return self.status(model_id)

    async def unload(self, model_id: str, reason: str = "request") -> ModelStatus:
        """Unload after in-flight requests finish; new requests wait until it is done.
        ``reason`` goes into the log line: "request" (an admin's), or "shutdown"."""
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
        await self._finish_unload(slot, handle, reason)
        return self.status(model_id)

    @asynccontextmanager
    async def use(
        self, model_id: str, keep_alive_s: float | None = None
    ) -> AsyncIterator[ModelHandle]:
        """Hold the model for one request, loading it on demand.

        While held, the model is counted in flight and will not be unloaded. A model
        already holding ``queue_size`` requests refuses more with QueueFull. A
        ``keep_alive_s`` given here replaces the model's keep-alive from now on.
        """
        slot = self._slot(model_id)
        if slot.in_flight >= self.settings.queue_size:
            raise QueueFull(
                f"model {model_id!r} already holds {slot.in_flight} requests, the limit "
                "(AIO_QUEUE_SIZE); retry later"
            )
        if keep_alive_s is not None:
            slot.keep_alive_override = keep_alive_s
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
            slot.last_used = time.monotonic()
            if slot.in_flight == 0:
                self._became_idle(slot)
                if slot.state is ModelState.UNLOADING:
                    async with slot.changed:
                        slot.changed.notify_all()

    async def close(self) -> None:
        """Unload every model; used at shutdown."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for model_id, slot in self._slots.items():
            if slot.expiry is not None:
                slot.expiry.cancel()
            if slot.load_task is not None:
                await asyncio.gather(slot.load_task, return_exceptions=True)
            await self.unload(model_id, reason="shutdown")

    def _slot(self, model_id: str) -> Slot:
        self.catalogue.get(model_id)  # raises ModelNotFound with the usual message
        return self._slots[model_id]

    async def _ensure_ready(self, slot: Slot, deadline: float | None) -> None:
        """With ``slot.changed`` held: start a load if needed and wait for its outcome."""
        attempted = False
        while slot.state is not ModelState.READY:
            idle_states = (ModelState.UNLOADED, ModelState.FAILED)
            if attempted and slot.state in idle_states and slot.failure is not None:
                raise slot.failure
            if slot.state in idle_states:
                # A failed model is tried again on the next request: its file may be fixed.
                backend = self._backend(slot.entry.backend)
                slot.state, slot.error, slot.failure = ModelState.LOADING, None, None
                slot.load_task = asyncio.create_task(self._load(slot, backend))
            attempted = attempted or slot.state is ModelState.LOADING
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ModelNotReady(f"model {slot.entry.id!r} is not ready yet ({slot.state})")
            try:
                await asyncio.wait_for(slot.changed.wait(), remaining)
            except TimeoutError:
                if slot.waiting_for_room:
                    raise MemoryBudgetExceeded(self._over_budget(slot, BUSY)) from None
                raise ModelNotReady(
                    f"model {slot.entry.id!r} did not become ready within "
                    f"{self.settings.load_wait_s:g} s"
                ) from None

    async def _load(self, slot: Slot, backend: Backend) -> None:
        """Runs as its own task, so a request that gives up waiting does not cancel it."""
        if self.budget_bytes <= 0:
            await self._load_measured(slot, backend)
            return
        async with self._load_lock:
            try:
                await self._make_room(slot)
            except MemoryBudgetExceeded as exc:
                async with slot.changed:
                    slot.state, slot.failure, slot.load_task = ModelState.UNLOADED, exc, None
                    slot.changed.notify_all()
                return
            await self._load_measured(slot, backend)
        # The measured footprint may exceed the estimate the room was made for.
        self._evict_lru(self.resident_bytes() - self.budget_bytes, exclude=slot)

    async def _load_measured(self, slot: Slot, backend: Backend) -> None:
        entry = slot.entry
        started = time.perf_counter()
        before = resident_bytes()
        try:
            handle = await asyncio.to_thread(self._load_sync, entry, backend)
        except Exception as exc:
            message = exc.message if isinstance(exc, OrchestratorError) else repr(exc)
            async with slot.changed:
                slot.state, slot.error, slot.load_task = ModelState.FAILED, message, None
                slot.failure = ModelLoadFailed(message)
                slot.changed.notify_all()
            self._room.set()
            with model_context(entry.id):
                log.error("model load failed: %s", message, extra={"event": "model_failed"})
            return
        seconds = time.perf_counter() - started
        async with slot.changed:
            slot.handle, slot.state, slot.load_task = handle, ModelState.READY, None
            slot.has_loaded = True
            slot.load_seconds, slot.loaded_at = round(seconds, 3), time.time()
            # Never less than the file: a mapped file's pages may not be touched yet.
            measured = max(resident_bytes() - before, self._file_bytes(entry))
            footprint = handle.footprint_bytes() or measured
            slot.memory_bytes = slot.known_bytes = footprint
            slot.last_used = time.monotonic()
            slot.changed.notify_all()
        self._became_idle(slot, grace_s=LOAD_GRACE_S)
        with model_context(entry.id):
            log.info(
                "model loaded backend=%s seconds=%.3f",
                entry.backend,
                seconds,
                extra={"event": "model_loaded", "backend": entry.backend, "seconds": seconds},
            )

    async def _make_room(self, slot: Slot) -> None:
        """Evict idle models until ``slot``'s estimated footprint fits the budget, waiting
        for busy models to become idle up to ``load_wait_s``; raise if it cannot fit."""
        if slot.known_bytes is None:
            slot.known_bytes = self._estimate(slot.entry)
        need = slot.known_bytes
        unmovable = sum(s.memory_bytes or 0 for s in self._slots.values() if s.entry.pinned)
        if unmovable + need > self.budget_bytes:
            raise MemoryBudgetExceeded(self._over_budget(slot, "pinned models hold the rest"))
        deadline = time.monotonic() + self.settings.load_wait_s
        while (excess := self.resident_bytes() + need - self.budget_bytes) > 0:
            evicting = self._evict_lru(excess, exclude=slot)
            if evicting:
                await asyncio.gather(*evicting)
                continue
            self._room.clear()
            slot.waiting_for_room = True
            try:
                await asyncio.wait_for(self._room.wait(), deadline - time.monotonic())
            except TimeoutError:
                raise MemoryBudgetExceeded(self._over_budget(slot, BUSY)) from None
            finally:
                slot.waiting_for_room = False

    def _evict_lru(self, excess: int, exclude: Slot) -> list[asyncio.Task[None]]:
        """Start unloading the least recently used idle models that together free at least
        ``excess`` bytes; start none if the idle models cannot free that much."""
        if excess <= 0:
            return []
        idle = sorted(
            (s for s in self._slots.values() if s is not exclude and s.idle and not s.entry.pinned),
            key=lambda s: s.last_used,
        )
        victims, freed = [], 0
        for victim in idle:
            if freed >= excess:
                break
            victims.append(victim)
            freed += victim.memory_bytes or 0
        if freed < excess:
            return []
        for victim in victims:
            victim.evictions += 1
        return [self._evict(victim, "memory budget") for victim in victims]

    def _evict(self, slot: Slot, reason: str) -> asyncio.Task[None]:
        """Unload an idle model. Must be called in the same loop step that saw it idle."""
        assert slot.idle
        slot.state = ModelState.UNLOADING
        handle, slot.handle = slot.handle, None
        task = asyncio.create_task(self._finish_unload(slot, handle, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _finish_unload(self, slot: Slot, handle: ModelHandle | None, reason: str) -> None:
        if slot.expiry is not None:
            slot.expiry.cancel()
            slot.expiry = None
        try:
            if handle is not None:
                await asyncio.to_thread(handle.unload)
        except Exception:
            # The handle is dropped either way; a failed unload must not wedge the load
            # that was waiting for this room.
            with model_context(slot.entry.id):
                log.exception("model unload failed", extra={"event": "model_unload_failed"})
        finally:
            async with slot.changed:
                slot.state = ModelState.UNLOADED
                slot.memory_bytes = slot.loaded_at = None
                slot.changed.notify_all()
            self._room.set()
        with model_context(slot.entry.id):
            log.info(
                "model unloaded reason=%s",
                reason,
                extra={"event": "model_unloaded", "reason": reason},
            )

    def _became_idle(self, slot: Slot, grace_s: float = 0.0) -> None:
        """Note that a model has nothing in flight: wake loads waiting for room, and start
        its keep-alive timer."""
        self._room.set()
        if slot.expiry is not None:
            slot.expiry.cancel()
            slot.expiry = None
        keep_alive = self._keep_alive(slot)
        if keep_alive >= 0 and not slot.entry.pinned:
            loop = asyncio.get_running_loop()
            slot.expiry = loop.call_later(max(keep_alive, grace_s), self._expire, slot)

    def _expire(self, slot: Slot) -> None:
        slot.expiry = None
        if slot.idle:
            self._evict(slot, "keep-alive")

    def _keep_alive(self, slot: Slot) -> float:
        for value in (slot.keep_alive_override, slot.entry.keep_alive_s):
            if value is not None:
                return value
        return self.settings.keep_alive_s

    def _over_budget(self, slot: Slot, why: str) -> str:
        mib = 1024 * 1024
        return (
            f"model {slot.entry.id!r} needs about {(slot.known_bytes or 0) / mib:.1f} MiB and "
            f"the memory budget of {self.budget_bytes / mib:.1f} MiB has no room: {why}"
        )

    def _estimate(self, entry: CatalogueEntry) -> int:
        """Footprint of a model never loaded: what another entry with the same file took,
        else the file's size."""
        same_file = [
            s.known_bytes
            for s in self._slots.values()
            if s.entry.path == entry.path and s.known_bytes is not None
        ]
        return max(same_file, default=self._file_bytes(entry))

    def _file_bytes(self, entry: CatalogueEntry) -> int:
        try:
            return self.catalogue.file_of(entry).stat().st_size
        except OSError:
            return 0

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
