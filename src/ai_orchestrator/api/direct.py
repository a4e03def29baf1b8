"""Routes served as plain ASGI apps, ahead of FastAPI's router.

On a one-row classifier request, FastAPI's routing, dependency solving and request
object cost several times what the model does. The busiest routes are therefore served
here: the route table is a dict lookup on the exact path, the handler reads its own body
and writes its own bytes. They still pass through every middleware (request context,
CORS, keys, rate limit, deadline), and errors get the same envelope as on FastAPI routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ai_orchestrator.api.errors import error_response
from ai_orchestrator.errors import OrchestratorError


class DirectRoutes:
    """Answers the given routes itself; everything else goes on to ``app``. Added as the
    innermost middleware, so that everything outside it applies to these routes too."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route]) -> None:
        self.app = app
        self._routes = {
            (method, route.path): route for route in routes for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self._routes.get((scope["method"], scope["path"]))
        if route is None:
            # Other methods on these paths reach the router, which answers 405.
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # names the route in the log line and the metrics
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await route.app(scope, receive, tracked)
        except OrchestratorError as exc:
            if started:
                raise
            await error_response(exc)(scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, payload: Any, status: int = 200) -> None:
    """``payload`` as a JSON response, serialised by pydantic-core in one call."""
    body = to_json(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
