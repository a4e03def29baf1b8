"""Shared request plumbing for the route modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request
from starlette.types import Receive

from ai_orchestrator.errors import ClientDisconnected
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


T = TypeVar("T")


async def until_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Neither uvicorn nor Starlette cancels a handler whose client has gone; without this,
    a one-shot LLM request whose client timed out would keep generating to max_tokens.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        # The body has been read, so the next message can only be the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientDisconnected("the client disconnected; its work was stopped") from None
        raise
    finally:
        watcher.cancel()
