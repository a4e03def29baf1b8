"""The one error type of the service. Each failure carries its HTTP status and a stable
code; the HTTP layer turns any of them into the single error envelope."""

from __future__ import annotations


def shown(text: str, limit: int = 64) -> str:
    """A client's string, quoted and cut short enough to repeat in an error message: a
    request may send megabytes where a name is expected."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class OrchestratorError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = {}


class InvalidInput(OrchestratorError):
    status = 400
    code = "invalid_input"


class InvalidRequest(OrchestratorError):
    """The request body does not have the fields and types the route expects."""

    status = 400
    code = "invalid_request"


class InvalidJson(OrchestratorError):
    status = 400
    code = "invalid_json"


class ModelNotFound(OrchestratorError):
    status = 404
    code = "model_not_found"


class UnsupportedTask(OrchestratorError):
    status = 400
    code = "unsupported_task"


class ModelLoadFailed(OrchestratorError):
    """The model's file is missing, differs from its catalogue hash, or its backend refused it."""

    status = 503
    code = "model_load_failed"


class ModelNotReady(OrchestratorError):
    """The model did not become ready within the wait, or it is being unloaded."""

    status = 503
    code = "model_not_ready"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


class MemoryBudgetExceeded(OrchestratorError):
    """Loading the model would exceed the memory budget and no idle model can make room."""

    status = 503
    code = "memory_budget_exceeded"

    def __init__(self, message: str, *, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


class NoCandidateAnswered(OrchestratorError):
    """Every candidate model of an orchestrated request failed or was passed over."""

    status = 503
    code = "no_candidate_answered"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


class BackendUnavailable(OrchestratorError):
    """The library behind a backend is not installed."""

    status = 501
    code = "backend_unavailable"


class InferenceFailed(OrchestratorError):
    status = 500
    code = "inference_failed"


class BodyTooLarge(OrchestratorError):
    status = 413
    code = "body_too_large"


class UnsupportedMediaType(OrchestratorError):
    status = 415
    code = "unsupported_media_type"


class ClientDisconnected(OrchestratorError):
    """The client went away before the answer was ready; its work was stopped."""

    status = 499
    code = "client_disconnected"


class ShuttingDown(OrchestratorError):
    """The shutdown grace ran out before the request was answered."""

    status = 503
    code = "shutting_down"


class CatalogueError(Exception):
    """The catalogue file is malformed; raised at start-up, never to a client."""


class Unauthorized(OrchestratorError):
    """No API key, or one that is not in the key file."""

    status = 401
    code = "invalid_api_key"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["WWW-Authenticate"] = "Bearer"


class Forbidden(OrchestratorError):
    """A valid API key whose scope does not cover the route."""

    status = 403
    code = "insufficient_scope"


class RateLimited(OrchestratorError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


class QueueFull(OrchestratorError):
    """The model already holds as many requests as its queue allows."""

    status = 503
    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after_s)


class RequestTimeout(OrchestratorError):
    status = 504
    code = "timeout"


class ConfigurationError(Exception):
    """A setting or a file it names is unusable; raised at start-up, never to a client."""
