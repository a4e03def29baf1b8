"""Liveness and readiness. Ready means every preload model is ready; a model loaded
later on demand does not make the service unready."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ai_orchestrator.api.deps import orchestrator
from ai_orchestrator.api.errors import envelope
from ai_orchestrator.service import Orchestrator

router = APIRouter(tags=["health"])
Core = Annotated[Orchestrator, Depends(orchestrator)]


@router.get("/health", summary="Alias of /health/live")
@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", summary="Every preload model is ready")
async def ready(core: Core) -> JSONResponse:
    waiting = {
        model_id: core.models.status(model_id).state.value
        for model_id in core.settings.preload
        if not core.models.is_ready(model_id)
    }
    if waiting:
        listed = ", ".join(f"{model_id} ({state})" for model_id, state in waiting.items())
        return envelope(503, "not_ready", f"waiting for preload models: {listed}")
    return JSONResponse({"status": "ready"})
