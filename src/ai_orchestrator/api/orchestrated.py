"""ALT_LAS routes that choose or combine models: orchestrated, batch, parallel, ensemble.

The policies live in ``ai_orchestrator.orchestration``; these adapters only shape the
requests into calls of ``run_one`` and the outcomes into JSON.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ai_orchestrator.api.deps import orchestrator, until_disconnected
from ai_orchestrator.api.errors import error_fields
from ai_orchestrator.api.models import Outputs, run_one
from ai_orchestrator.api.schemas import (
    BatchRequest,
    EnsembleRequest,
    OrchestratedRequest,
    ParallelRequest,
)
from ai_orchestrator.catalogue import Strategy, Task
from ai_orchestrator.errors import InvalidInput
from ai_orchestrator.orchestration import (
    Outcome,
    candidates_for,
    combine,
    first_answer,
    rank,
    run_all,
)
from ai_orchestrator.service import Orchestrator

router = APIRouter(prefix="/api/inference", tags=["orchestration"])
Core = Annotated[Orchestrator, Depends(orchestrator)]


@router.post("/orchestrated", summary="Choose a model by strategy, falling back on failure")
async def orchestrated(body: OrchestratedRequest, core: Core, http: Request) -> dict[str, Any]:
    task, strategy, names = _choice(core, body)
    ranked = rank(
        core.catalogue, core.latency, candidates_for(core.catalogue, task, names), strategy
    )
    started = time.perf_counter()

    async def call(model_id: str) -> Outputs:
        entry = core.catalogue.get(model_id)
        return await run_one(core, entry, body.inputs, body.parameters, body.keep_alive)

    answer = await until_disconnected(http.receive, first_answer(ranked, call))
    outputs, usage = answer.result
    return {
        "model_id": answer.model_id,
        "task": task.value,
        "strategy": strategy.value,
        "candidates": ranked,
        "passed_over": [vars(passed) for passed in answer.passed_over],
        "outputs": outputs,
        "usage": usage,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }


@router.post("/batch", summary="Many inputs, one model; results in input order")
async def batch(body: BatchRequest, core: Core, http: Request) -> dict[str, Any]:
    entry = core.entry_for(body.model_id)
    calls = [
        (entry.id, run_one(core, entry, item, body.parameters, body.keep_alive))
        for item in body.inputs
    ]
    outcomes = await until_disconnected(http.receive, run_all(calls))
    return {"model_id": entry.id, "results": [_item(o) for o in outcomes]}


@router.post("/parallel", summary="One input, several models; results side by side")
async def parallel(body: ParallelRequest, core: Core, http: Request) -> dict[str, Any]:
    entries = [core.catalogue.get(model_id) for model_id in body.model_ids]
    calls = [
        (entry.id, run_one(core, entry, body.inputs, body.parameters, body.keep_alive))
        for entry in entries
    ]
    outcomes = await until_disconnected(http.receive, run_all(calls))
    return {"results": [{"model_id": o.model_id, **_item(o)} for o in outcomes]}


@router.post("/ensemble", summary="Classify with several models, combined by vote or average")
async def ensemble(body: EnsembleRequest, core: Core) -> dict[str, Any]:
    members = candidates_for(core.catalogue, Task.CLASSIFICATION, body.model_ids)
    calls = [
        (model_id, core.classify(model_id, body.inputs, body.keep_alive)) for model_id in members
    ]
    deadline = None if body.deadline_ms is None else body.deadline_ms / 1000
    outcomes = await run_all(calls, deadline)
    _reraise_client_error(outcomes)
    result = combine(outcomes, body.method)
    outputs: dict[str, Any] = {"labels": result.labels}
    if result.probabilities is not None:
        outputs["probabilities"] = result.probabilities
    return {"method": body.method, "outputs": outputs, "members": result.members}


def _choice(
    core: Orchestrator, body: OrchestratedRequest
) -> tuple[Task, Strategy, list[str] | None]:
    if body.route is not None:
        route = core.catalogue.route(body.route)
        # The route names its own candidates: others given too would be ignored.
        if body.candidates is not None:
            raise InvalidInput(
                f"give candidates or a route, not both: route {route.name!r} has its own",
                param="candidates",
            )
        if body.task is not None and body.task is not route.task:
            raise InvalidInput(
                f"route {route.name!r} serves {route.task.value}, not {body.task.value}"
            )
        return route.task, body.strategy or route.strategy, list(route.candidates)
    if body.task is None:
        raise InvalidInput("give a task or a route", param="task")
    return body.task, body.strategy or Strategy.LATENCY, body.candidates


def _item(outcome: Outcome[Outputs]) -> dict[str, Any]:
    if outcome.error is not None:
        return {"error": error_fields(outcome.error)}
    assert outcome.result is not None
    outputs, usage = outcome.result
    return {"outputs": outputs, "usage": usage}


def _reraise_client_error(outcomes: list[Outcome[Any]]) -> None:
    """Bad inputs are the same for every member: report them as the request's error."""
    for outcome in outcomes:
        if isinstance(outcome.error, InvalidInput):
            raise outcome.error
