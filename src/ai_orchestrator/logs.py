"""Logging: a few fixed lifecycle lines, JSON in staging and production, text elsewhere.

The request id and model id travel in context variables, so every line logged while
handling a request carries them without being passed around.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ai_orchestrator.settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
model_id_var: ContextVar[str | None] = ContextVar("model_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra``.
# uvicorn's color_message repeats the message with terminal colour codes.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


@contextmanager
def model_context(model_id: str) -> Iterator[None]:
    token = model_id_var.set(model_id)
    try:
        yield
    finally:
        model_id_var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.model_id = getattr(record, "model_id", None) or model_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None
        )
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s%(context)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "model_id")
            if getattr(record, key, None)
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def configure_logging(settings: Settings) -> None:
    """Send the service's and uvicorn's logs to stderr in the environment's format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    handler.addFilter(_ContextFilter())
    for name in ("ai_orchestrator", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(settings.log_level)
        logger.propagate = False
    # Our own request line replaces uvicorn's access log, which lacks ids and latency.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
