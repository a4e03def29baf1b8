"""Liveness and readiness. Ready means every preload model has loaded and has not failed
since. One unloaded later (keep-alive, eviction, an admin's unload) reloads on the next
request, so it keeps the service ready: an idle replica must stay in its load balancer's
rotation to get the traffic that reloads it. A model loaded later on demand does not make
the service unready."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ai_orchestrator.api.deps import orchestrator
from ai_orchestrator.api.errors import envelope
from ai_orchestrator.service import Orchestrator

router = APIRouter(tags=["health"])
Core = Annotated[Orchestrator, Depends(orchestrator)]


# HEAD too: some load balancers' probes send it.
@router.api_route("/health", methods=["GET", "HEAD"], summary="Alias of /health/live")
@router.api_route("/health/live", methods=["GET", "HEAD"], summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.api_route(
    "/health/ready",
    methods=["GET", "HEAD"],
    summary="Every preload model has loaded and not failed since",
)
async def ready(core: Core) -> JSONResponse:
    waiting = core.unready_preloads()
    if waiting:
        listed = ", ".join(f"{model_id} ({state})" for model_id, state in waiting.items())
        return envelope(503, "not_ready", f"waiting for preload models: {listed}")
    return JSONResponse({"status": "ready"})
