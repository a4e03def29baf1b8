"""The per-model state the lifecycle keeps: the states, the snapshot the API reports, and
the slot holding one model's handle, counters and wait condition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from ai_orchestrator.backends.base import ModelHandle
from ai_orchestrator.catalogue import CatalogueEntry
from ai_orchestrator.errors import OrchestratorError


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
    pinned: bool
    keep_alive_s: float
    evictions: int
    """Times the model was unloaded to make room for another under the memory budget."""


class Slot:
    """One catalogue entry's lifecycle state; owned by the ModelManager."""

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
        # Why the last load attempt gave up, raised to the requests that waited for it.
        self.failure: OrchestratorError | None = None
        # Footprint of the last load, kept across unloads to estimate the next one.
        self.known_bytes: int | None = None
        self.last_used = 0.0
        self.evictions = 0
        self.keep_alive_override: float | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.waiting_for_room = False
        # Loaded at least once: unloaded since (keep-alive, eviction, an admin), it reloads
        # on demand, so it still counts towards the service being ready.
        self.has_loaded = False

    @property
    def idle(self) -> bool:
        return self.state is ModelState.READY and self.in_flight == 0

    @property
    def resident_bytes(self) -> int:
        if self.state in (ModelState.READY, ModelState.UNLOADING):
            return self.memory_bytes or 0
        return 0
