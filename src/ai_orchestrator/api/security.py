"""Who may call which route, how often, and for how long, as plain ASGI middleware.

The scope a route needs is decided by its path, before routing, so that no route can be
left open by forgetting a dependency on it, and unknown paths answer 401 rather than
revealing which paths exist.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ai_orchestrator.api.errors import envelope
from ai_orchestrator.auth import KeyRing, authorize
from ai_orchestrator.auth import Scope as KeyScope
from ai_orchestrator.errors import OrchestratorError, RateLimited, RequestTimeout, Unauthorized
from ai_orchestrator.ratelimit import RateLimiter, retry_after

_ADMIN_PATH = re.compile(r"^/api/models/[^/]+/(load|unload)$|^/metrics$")


def needed_scope(path: str) -> KeyScope | None:
    """The scope a request needs, or None for the open health routes."""
    if path == "/health" or path.startswith("/health/"):
        return None
    if _ADMIN_PATH.match(path):
        return KeyScope.ADMIN
    return KeyScope.INFERENCE


def presented_key(scope: Scope) -> str | None:
    """The key from ``Authorization: Bearer`` (as the OpenAI client sends it) or
    ``X-API-Key``. Two different keys are refused: a valid one must not cover for a wrong
    one, which may be an attacker's guess or a misconfigured client."""
    keys = set()
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = str(value.decode("latin-1")).partition(" ")
            if kind.lower() == "bearer" and token.strip():
                keys.add(token.strip())
        elif name == b"x-api-key" and value:
            keys.add(str(value.decode("latin-1")))
    if len(keys) > 1:
        raise Unauthorized("the request carries more than one API key; send one")
    return keys.pop() if keys else None


class Guard:
    """API keys and their scopes, then the per-key rate limit."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing | None,
        limiter: RateLimiter | None,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = needed_scope(scope["path"])
        if needed is not None:
            try:
                self._admit(scope, needed)
            except OrchestratorError as exc:
                self._label_route(scope)
                response = envelope(exc.status, exc.code, exc.message, headers=exc.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _admit(self, scope: Scope, needed: KeyScope) -> None:
        if self.keys is not None:
            principal = self.keys.authenticate(presented_key(scope))
            authorize(principal, needed)
            caller = principal.key_id
        else:
            principal = None
            client = scope.get("client")
            caller = client[0] if client else "unknown"
        scope.setdefault("state", {})["principal"] = principal
        if self.limiter is not None:
            wait = self.limiter.acquire(caller)
            if wait:
                raise RateLimited(
                    f"over the rate limit of {self.limiter.rate:g} requests per second "
                    "(AIO_RATE_LIMIT_PER_S)",
                    retry_after_s=retry_after(wait),
                )

    def _label_route(self, scope: Scope) -> None:
        """Find the route a refused request was meant for, so that its log line and
        metrics name it; only refused requests pay for this second match."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                return


class Deadline:
    """Answers 504 when a response has not started within ``timeout_s``.

    The handler is not cancelled here: it keeps its model until the backend call returns,
    so that the model cannot be unloaded under a running call; its late response is
    dropped. A generation sees the 504 end the exchange as a disconnect and stops
    (deps.until_disconnected). A streamed response that has started is not limited.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"started": False, "answer": None}

        async def guarded_send(message: Message) -> None:
            if state["answer"] is not None:
                return
            state["started"] = True
            await send(message)

        def expire() -> None:
            if not state["started"]:
                state["started"] = True
                state["answer"] = asyncio.ensure_future(self._timeout(scope, receive, send))

        timer = asyncio.get_running_loop().call_later(self.timeout_s, expire)
        try:
            await self.app(scope, receive, guarded_send)
        finally:
            timer.cancel()
            if state["answer"] is not None:
                await state["answer"]

    async def _timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = RequestTimeout(f"no response within {self.timeout_s:g} s (AIO_REQUEST_TIMEOUT_S)")
        await envelope(exc.status, exc.code, exc.message)(scope, receive, send)
