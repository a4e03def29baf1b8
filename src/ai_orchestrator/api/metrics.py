"""``GET /metrics`` in the Prometheus text format (admin key where keys are required)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ai_orchestrator.api import deps
from ai_orchestrator.metrics import Metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(registry: Annotated[Metrics, Depends(deps.metrics)]) -> Response:
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
