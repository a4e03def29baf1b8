"""Settings, read once from the environment (prefix ``AIO_``) and passed in from there.

Nothing in the package reads the environment at import time: ``Settings()`` is built by
the command line or the application factory and handed to whatever needs it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


# The one place where defaults differ per environment. A value set explicitly through
# the environment always wins over these.
ENVIRONMENT_DEFAULTS: dict[Environment, dict[str, Any]] = {
    Environment.DEVELOPMENT: {
        "log_level": "DEBUG",
        "docs_enabled": True,
        "log_json": False,
        "cors_origins": ("http://localhost:3000", "http://127.0.0.1:3000"),
        "rate_limit_per_s": 0,
    },
    Environment.TEST: {
        "log_level": "INFO",
        "docs_enabled": True,
        "log_json": False,
        "cors_origins": (),
        "rate_limit_per_s": 0,
    },
    Environment.STAGING: {
        "log_level": "INFO",
        "docs_enabled": True,
        "log_json": True,
        "cors_origins": (),
        "rate_limit_per_s": 20,
    },
    Environment.PRODUCTION: {
        "log_level": "INFO",
        "docs_enabled": False,
        "log_json": True,
        "cors_origins": (),
        "rate_limit_per_s": 20,
    },
}

# Environments where every route but /health/* needs an API key, and the service
# refuses to start without a key file.
KEYED_ENVIRONMENTS = frozenset({Environment.STAGING, Environment.PRODUCTION})


class Settings(BaseSettings):
    """Service settings. Every field can be set as ``AIO_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AIO_", frozen=True, extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    """Deployment environment; selects the per-environment defaults above."""

    host: str = "127.0.0.1"
    """Address the HTTP server binds to."""

    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port of the HTTP server, the only port the service listens on."""

    log_level: str = "INFO"
    """Log level name (DEBUG, INFO, WARNING, ...); defaults per environment."""

    log_json: bool = False
    """JSON log lines instead of text; defaults to on in staging and production."""

    docs_enabled: bool = True
    """Serve /docs and /openapi.json; defaults to off in production."""

    opentelemetry: bool = False
    """FastAPI's OpenTelemetry spans, metrics and logs, sent to the providers configured in
    the process. Off by default: its per-request check costs as much as a classifier call,
    and the service's own metrics are Prometheus."""

    catalogue: Path = Path("models/catalogue.yaml")
    """Path of the catalogue file (YAML) listing the models the service may load."""

    model_dir: Path = Path("models")
    """Directory that catalogue entry paths are relative to."""

    preload: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated model ids loaded at start; /health/ready waits for them."""

    load_wait_s: float = Field(default=120.0, gt=0)
    """How long a request waits for a model that is loading before it gives up."""

    memory_budget_mb: float = Field(default=0, ge=0)
    """Memory the loaded models may take together, in MiB; 0 means no budget. A load
    that would exceed it first unloads the least recently used idle models."""

    keep_alive_s: float = -1
    """How long a model stays loaded after its last request; negative means for ever.
    A catalogue entry's ``keep_alive_s`` and a request's ``keep_alive`` override it."""

    batch_max_size: int = Field(default=32, ge=1)
    """Most rows gathered into one ONNX call from concurrent requests; 1 turns batching off."""

    batch_max_wait_ms: float = Field(default=2.0, ge=0)
    """Longest a request waits for others to join its batch, and only while others are
    queued: a request that finds nothing queued runs at once."""

    llm_threads: int = Field(default=2, ge=1)
    """CPU threads for llama.cpp generation; the machine's cores are shared with ONNX."""

    onnx_intra_op_threads: int = Field(default=1, ge=1)
    """ONNX Runtime threads within one operator."""

    onnx_inter_op_threads: int = Field(default=1, ge=1)
    """ONNX Runtime threads across operators."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest accepted request body; larger ones get 413."""

    shutdown_grace_s: int = Field(default=30, ge=0)
    """On SIGTERM, how long in-flight requests may take to finish before the process exits."""

    api_keys_file: Path | None = None
    """File of API keys, one ``<scope>:<key>`` per line (scope ``inference`` or ``admin``).
    Required in staging and production; elsewhere keys are checked only if it is set.
    Only the keys' hashes are kept in memory."""

    rate_limit_per_s: float = Field(default=0, ge=0)
    """Requests per second allowed per API key (per client address without keys); 0 turns
    the limit off. Defaults to 20 in staging and production, off elsewhere."""

    rate_limit_burst: int = Field(default=40, ge=1)
    """Requests a key may send at once above its steady rate before getting 429."""

    queue_size: int = Field(default=64, ge=1)
    """Requests one model may hold in flight or waiting; more get 503 with Retry-After."""

    request_timeout_s: float = Field(default=300, gt=0)
    """Time to the first byte of a response; a slower request gets 504."""

    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated origins browsers may call from; localhost:3000 in development,
    none elsewhere unless set."""

    max_prompt_chars: int = Field(default=32768, ge=1)
    """Longest prompt, in characters (all messages of a chat, or all texts to embed)."""

    max_tokens_limit: int = Field(default=2048, ge=1)
    """Largest ``max_tokens`` a request may ask for; also the default when it asks none."""

    @field_validator("preload", "cors_origins", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_log_level(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="before")
    @classmethod
    def _environment_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            env = Environment(data.get("env") or Environment.DEVELOPMENT)
            for name, default in ENVIRONMENT_DEFAULTS[env].items():
                data.setdefault(name, default)
        return data

    @property
    def keys_required(self) -> bool:
        """Whether requests need an API key: always in staging and production, elsewhere
        only when a key file is given."""
        return self.env in KEYED_ENVIRONMENTS or self.api_keys_file is not None

    def summary(self) -> dict[str, object]:
        """The settings as logged at start; secrets never appear here."""
        return {name: str(value) for name, value in self.model_dump().items()}
