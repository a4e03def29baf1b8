"""One error envelope for every route:
``{"error": {"code", "message", "request_id", "type", "param"}}``.

``type`` and ``param`` are there so that the official OpenAI client reads our errors
as it reads OpenAI's. Unexpected errors are caught by the request middleware,
which answers a plain 500 with the request id and logs the traceback once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ai_orchestrator.errors import InvalidJson, InvalidRequest, OrchestratorError
from ai_orchestrator.logs import request_id_var

log = logging.getLogger("ai_orchestrator.http")
# Set in the ASGI scope by the request middleware when a streamed body passes the limit.
BODY_TOO_LARGE_MARK = "aio.body_too_large"
# Set in the ASGI scope by a streaming route: given the error that cut the stream short,
# the bytes that end it as a failed stream ends (see api/openai.py).
STREAM_EPILOGUE = "aio.stream_epilogue"


def envelope(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": _error_fields(status, code, message, param)}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_fields(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {
        "code": code,
        "message": message,
        "request_id": request_id_var.get(),
        "type": kind,
        "param": param,
    }


def error_fields(exc: OrchestratorError) -> dict[str, Any]:
    """What the envelope's "error" holds, for an error reported inside an answer (one
    item of a batch, one model of a parallel call)."""
    return _error_fields(exc.status, exc.code, exc.message, exc.param)


@contextmanager
def fields_as_sent(names: Mapping[str, str]) -> Iterator[None]:
    """The core names the fields it checks as the OpenAI API does; in an error raised
    inside, one that the request sent under another name gets that name instead."""
    try:
        yield
    except OrchestratorError as exc:
        known = exc.param or ""
        if known in names:
            if exc.message.startswith(known):
                exc.message = names[known] + exc.message.removeprefix(known)
            exc.param = names[known]
        raise


def too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


def error_body(exc: OrchestratorError) -> bytes:
    """The envelope as bytes, for errors that happen inside a stream."""
    return bytes(envelope(exc.status, exc.code, exc.message, param=exc.param).body)


def error_response(exc: OrchestratorError) -> JSONResponse:
    if exc.status >= 500:
        log.warning("request failed: %s", exc.message, extra={"code": exc.code})
    return envelope(exc.status, exc.code, exc.message, param=exc.param, headers=exc.headers)


def first_error(errors: Sequence[Any]) -> tuple[str, str]:
    """The field (dotted, FastAPI's "body" left out) and the "field: message" text of the
    first of pydantic's validation errors."""
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ()) if not _internal(part))
    text = str(first.get("msg")).removeprefix("Value error, ")
    message = f"{field}: {text}" if field else text
    return field, message


def _internal(part: object) -> bool:
    """A part of pydantic's error location that is no field of the request: FastAPI's
    "body", and the member of a union that was tried ("str", "list[TextPart]")."""
    return part == "body" or (isinstance(part, str) and (part in _TYPE_NAMES or "[" in part))


_TYPE_NAMES = {"str", "int", "float", "bool", "dict", "list", "none"}


def invalid_body(errors: Sequence[Any]) -> OrchestratorError:
    """The first of pydantic's validation errors of a request body, as our error."""
    if errors[0].get("type") == "json_invalid":
        detail = (errors[0].get("ctx") or {}).get("error")
        return InvalidJson("the request body is not valid JSON" + (f": {detail}" if detail else ""))
    field, message = first_error(errors)
    return InvalidRequest(message, param=field or None)


async def _orchestrator_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchestratorError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(invalid_body(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if request.scope.get(BODY_TOO_LARGE_MARK):
        limit = request.app.state.orchestrator.settings.max_body_bytes
        return envelope(413, "body_too_large", too_large(limit))
    if exc.status_code == 400:
        # FastAPI's one message for a body it could not read: bad UTF-8, too deep, cut off.
        return error_response(InvalidJson("the request body is not valid JSON"))
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
    code = codes.get(exc.status_code, "http_error")
    return envelope(exc.status_code, code, str(exc.detail), headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
