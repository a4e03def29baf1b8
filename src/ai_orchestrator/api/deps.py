"""Shared request plumbing for the route modules."""

from __future__ import annotations

from fastapi import Request

from ai_orchestrator.service import Orchestrator


def orchestrator(request: Request) -> Orchestrator:
    core: Orchestrator = request.app.state.orchestrator
    return core
