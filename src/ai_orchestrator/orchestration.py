"""Choosing and combining models: strategies, fallback, ensembles, batch and parallel runs.

The functions here take the work to do as a callable of a model id, or as awaitables
named by model id, so that the policy (in which order, what counts as a failure, which
deadline) stays apart from the wire formats of the HTTP adapters that call them.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from ai_orchestrator.backends.base import Classification
from ai_orchestrator.catalogue import Catalogue, Strategy, Task
from ai_orchestrator.errors import InvalidInput, NoCandidateAnswered, OrchestratorError
from ai_orchestrator.service import LatencyStats

T = TypeVar("T")

# Failures that say the request is wrong, not the model: another model would refuse it too.
CLIENT_ERRORS = (InvalidInput,)


@dataclass(frozen=True)
class PassedOver:
    """A candidate that did not answer, and why."""

    model_id: str
    code: str
    reason: str


@dataclass
class Answer(Generic[T]):
    model_id: str
    result: T
    passed_over: list[PassedOver] = field(default_factory=list)


def candidates_for(catalogue: Catalogue, task: Task, names: Sequence[str] | None) -> list[str]:
    """The given model ids (checked to exist and to have the task), or every model of it."""
    if not names:
        found = [entry.id for entry in catalogue if entry.task is task]
        if not found:
            raise InvalidInput(f"the catalogue has no {task.value} model")
        return found
    for name in names:
        if catalogue.get(name).task is not task:
            raise InvalidInput(f"candidate {name!r} is not a {task.value} model")
    return list(names)


def rank(
    catalogue: Catalogue, latency: LatencyStats, candidates: Sequence[str], strategy: Strategy
) -> list[str]:
    """Order the candidates best first. Ties keep the given order.

    ``latency`` sorts by the live median; a model not yet measured goes first, so that it
    gets measured. ``accuracy`` (highest first) and ``cost`` (lowest first) use the
    catalogue's metadata; a model that declares none goes last.
    """

    def key(model_id: str) -> float:
        if strategy is Strategy.LATENCY:
            p50 = latency.p50(model_id)
            return -math.inf if p50 is None else p50
        value = catalogue.get(model_id).metadata.get(strategy.value)
        if not isinstance(value, int | float):
            return math.inf
        return -float(value) if strategy is Strategy.ACCURACY else float(value)

    return sorted(candidates, key=key)


async def first_answer(candidates: Sequence[str], call: Callable[[str], Awaitable[T]]) -> Answer[T]:
    """Try each candidate in order until one answers; a model that fails to load or fails
    before answering is passed over. A client error ends the search at once."""
    passed_over: list[PassedOver] = []
    for model_id in candidates:
        try:
            result = await call(model_id)
        except CLIENT_ERRORS:
            raise
        except OrchestratorError as exc:
            passed_over.append(PassedOver(model_id, exc.code, exc.message))
            continue
        return Answer(model_id, result, passed_over)
    reasons = "; ".join(f"{p.model_id}: {p.reason}" for p in passed_over)
    raise NoCandidateAnswered(f"no candidate answered ({reasons})")


@dataclass
class Outcome(Generic[T]):
    """One model's part in a batch, a parallel run or an ensemble."""

    model_id: str
    result: T | None = None
    error: OrchestratorError | None = None
    late: bool = False


async def run_all(
    calls: Sequence[tuple[str, Awaitable[T]]], deadline_s: float | None = None
) -> list[Outcome[T]]:
    """Run the calls concurrently; keep each one's result or error, in the given order.

    A call still running at the deadline is cancelled and marked late.
    """
    tasks = [asyncio.ensure_future(awaitable) for _, awaitable in calls]
    try:
        if tasks:
            await asyncio.wait(tasks, timeout=deadline_s)
    except asyncio.CancelledError:
        # The caller gave up (its client left): so does every call it started.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    outcomes = []
    for (model_id, _), task in zip(calls, tasks, strict=True):
        outcome: Outcome[T] = Outcome(model_id)
        if not task.done() or task.cancelled():
            task.cancel()
            outcome.late = True
        elif isinstance(task.exception(), OrchestratorError):
            outcome.error = task.exception()  # type: ignore[assignment]
        else:
            outcome.result = task.result()
        outcomes.append(outcome)
    await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes


@dataclass
class Ensemble:
    labels: list[int]
    probabilities: list[list[float]] | None
    members: list[dict[str, Any]]


def combine(outcomes: Sequence[Outcome[Classification]], method: str) -> Ensemble:
    """Majority vote (``vote``) or mean of the members' probabilities (``average``).

    Only members that answered in time take part; the others are named with the reason.
    A vote tie goes to the lowest label, so the answer does not depend on timing.
    """
    answered = [o for o in outcomes if o.result is not None]
    members = [_member(outcome) for outcome in outcomes]
    if not answered:
        raise NoCandidateAnswered("no ensemble member answered in time: " + _why(members))
    results = [o.result for o in answered if o.result is not None]
    rows = len(results[0].labels)
    if method == "vote":
        labels = []
        for row in range(rows):
            counts = Counter(result.labels[row] for result in results)
            best = max(counts.values())
            labels.append(min(label for label, n in counts.items() if n == best))
        return Ensemble(labels, None, members)
    widths = {len(result.probabilities[0]) for result in results}
    if len(widths) != 1:
        raise InvalidInput("ensemble members disagree on the number of classes")
    averaged = np.mean([result.probabilities for result in results], axis=0)
    labels = [int(label) for label in averaged.argmax(axis=1)]
    return Ensemble(labels, averaged.round(6).tolist(), members)


def _member(outcome: Outcome[Any]) -> dict[str, Any]:
    if outcome.late:
        return {"model_id": outcome.model_id, "status": "late", "reason": "missed the deadline"}
    if outcome.error is not None:
        return {"model_id": outcome.model_id, "status": "failed", "reason": outcome.error.message}
    return {"model_id": outcome.model_id, "status": "included", "reason": None}


def _why(members: list[dict[str, Any]]) -> str:
    return "; ".join(f"{m['model_id']}: {m['reason']}" for m in members)
