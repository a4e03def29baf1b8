"""Per-request context as plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware
and safe for streaming): request id, body size limit, one log line and the request
metrics, last-resort 500."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ai_orchestrator.api.errors import (
    BODY_TOO_LARGE_MARK,
    STREAM_EPILOGUE,
    envelope,
    error_response,
    too_large,
)
from ai_orchestrator.errors import (
    BodyTooLarge,
    OrchestratorError,
    ShuttingDown,
    UnsupportedMediaType,
)
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
            _check_headers(scope, self.max_body_bytes)
            await self.app(scope, self._limited(scope, receive), send_with_id)
        except OrchestratorError as exc:
            if state["status"] is None:
                await error_response(exc)(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels requests still running when the shutdown grace period ends
            # (nothing else cancels a request's task). The client gets the envelope, or a
            # stream its error ending, rather than a bare 500 or a cut connection.
            stopped = ShuttingDown("the service stopped before answering")
            epilogue = scope.get(STREAM_EPILOGUE)
            if state["status"] is None:
                await error_response(stopped)(scope, receive, send_with_id)
            elif epilogue is not None:
                body = {"type": "http.response.body", "body": epilogue(stopped)}
                await send_with_id(body)
            else:
                raise
            # Answered: the cancellation has done its work. Raised on, uvicorn would log
            # it as an exception in the application.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            log.exception("unexpected error")
            if state["status"] is None:
                response = envelope(
                    500, "internal_error", "internal error; the request id locates it in the log"
                )
                await response(scope, receive, send_with_id)
        finally:
            self._log(scope, state["status"], time.perf_counter() - started)

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                # FastAPI turns any error while reading the body into a generic 400; this
                # mark lets the error handler answer 413 instead.
                scope[BODY_TOO_LARGE_MARK] = True
                raise BodyTooLarge(too_large(self.max_body_bytes))
            return message

        return limited

    def _log(self, scope: Scope, status: int | None, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None)
        if self.metrics is not None:
            # Unmatched paths share one label, so that scanners cannot grow the metrics.
            self.metrics.observe_request(
                route or "unmatched", scope["method"], status or 0, seconds
            )
        # A passing probe is routine, and comes every second from the image's healthcheck.
        probe = route in _PROBES and status == 200
        log.log(
            logging.DEBUG if probe else logging.INFO,
            "%s %s %s %.1fms",
            scope["method"],
            # repr without its quotes: a newline or NUL in the path cannot forge a line.
            repr(scope["path"])[1:-1],
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


_WITH_BODY = {"POST", "PUT", "PATCH"}
_PROBES = {"/health", "/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"}


def _check_headers(scope: Scope, max_body_bytes: int) -> None:
    """Refuse what the headers alone show to be wrong, before reading any body."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            declared = int(value)
        elif (
            name == b"content-type"
            and scope["method"] in _WITH_BODY
            and b"json" not in value.lower()  # media types are case-insensitive
        ):
            sent = value.decode("latin-1")
            raise UnsupportedMediaType(
                f"send JSON with Content-Type: application/json, not {sent!r}"
            )
    if declared is not None and declared > max_body_bytes:
        raise BodyTooLarge(too_large(max_body_bytes))


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_ID.match(value):
            return bytes(value).decode()
    # 32 random hex digits, as uuid4().hex gives, for a fifth of its cost.
    return os.urandom(16).hex()
