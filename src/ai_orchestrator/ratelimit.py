"""Per-key request rate, in this process only: a token bucket per key.

One node needs no external store. With several replicas each enforces its own limit,
so the effective limit is the per-node rate times the replica count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Buckets are dropped once they have refilled, since a full bucket and no bucket mean
# the same; this bounds memory when callers are identified by address.
_PRUNE_AT = 10_000


class RateLimiter:
    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)

    def acquire(self, caller: str) -> float:
        """Take one token for ``caller``: 0 if granted, else the seconds until one is free."""
        now = self._clock()
        tokens, at = self._buckets.get(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= _PRUNE_AT:
            self._prune(now)
        self._buckets[caller] = (tokens - 1, now)
        return 0.0

    def _prune(self, now: float) -> None:
        self._buckets = {
            caller: (tokens, at)
            for caller, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate < self.burst
        }


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header, at least 1."""
    return max(1, math.ceil(seconds))
