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


# HEAD too, since some load balancers probe with it; out of the schema, where it would
# duplicate the GET operation.
@router.get("/health", summary="Alias of /health/live")
@router.head("/health", include_in_schema=False)
@router.get("/health/live", summary="The process is up")
@router.head("/health/live", include_in_schema=False)
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", summary="Every preload model has loaded and not failed since")
@router.head("/health/ready", include_in_schema=False)
async def ready(core: Core) -> JSONResponse:
    waiting = core.unready_preloads()
    if waiting:
        listed = ", ".join(f"{model_id} ({state})" for model_id, state in waiting.items())
        return envelope(503, "not_ready", f"waiting for preload models: {listed}")
    return JSONResponse({"status": "ready"})
