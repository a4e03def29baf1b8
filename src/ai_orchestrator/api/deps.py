"""Shared request plumbing for the route modules."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ai_orchestrator.metrics import Metrics
from ai_orchestrator.service import Orchestrator


async def orchestrator(request: Request) -> Orchestrator:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
    # which costs more than the whole classifier call.
    core: Orchestrator = request.app.state.orchestrator
    return core


async def metrics(request: Request) -> Metrics:
    found: Metrics = request.app.state.metrics
    return found


def completion_tokens(response: dict[str, Any]) -> int:
    """Tokens generated, from the usage block of an OpenAI-shaped response or chunk."""
    usage = response.get("usage") or {}
    tokens = usage.get("completion_tokens", 0)
    return tokens if isinstance(tokens, int) else 0
