"""Shared request plumbing for the route modules."""

from __future__ import annotations

from fastapi import Request

from ai_orchestrator.service import Orchestrator


async def orchestrator(request: Request) -> Orchestrator:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
    # which costs more than the whole classifier call.
    core: Orchestrator = request.app.state.orchestrator
    return core
