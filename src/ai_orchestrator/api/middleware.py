"""Per-request context as plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware
and safe for streaming): request id, body size limit, one log line and the request
metrics, last-resort 500."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ai_orchestrator.api.errors import envelope
from ai_orchestrator.errors import BodyTooLarge
from ai_orchestrator.logs import model_id_var, request_id_var
from ai_orchestrator.metrics import Metrics

log = logging.getLogger("ai_orchestrator.http")
_CLIENT_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        request_id_var.set(request_id)
        model_id_var.set(None)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge(self._too_large())
            await self.app(scope, self._limited(receive), send_with_id)
        except BodyTooLarge as exc:
            if state["status"] is None:
                await envelope(exc.status, exc.code, exc.message)(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error")
            if state["status"] is None:
                response = envelope(
                    500, "internal_error", "internal error; the request id locates it in the log"
                )
                await response(scope, receive, send_with_id)
        finally:
            self._log(scope, state["status"], time.perf_counter() - started)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise BodyTooLarge(self._too_large())
            return message

        return limited

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self.max_body_bytes} bytes"

    def _log(self, scope: Scope, status: int | None, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None)
        if self.metrics is not None:
            # Unmatched paths share one label, so that scanners cannot grow the metrics.
            self.metrics.observe_request(
                route or "unmatched", scope["method"], status or 0, seconds
            )
        log.info(
            "%s %s %s %.1fms",
            scope["method"],
            scope["path"],
            status,
            seconds * 1000,
            extra={
                "event": "request",
                "route": route,
                # Names the key by a digest prefix, never the key; set by security.Guard.
                "key_id": getattr((scope.get("state") or {}).get("principal"), "key_id", None),
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
            },
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_ID.match(value):
            return bytes(value).decode()
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
