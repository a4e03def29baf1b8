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
    Environment.DEVELOPMENT: {"log_level": "DEBUG", "docs_enabled": True, "log_json": False},
    Environment.TEST: {"log_level": "INFO", "docs_enabled": True, "log_json": False},
    Environment.STAGING: {"log_level": "INFO", "docs_enabled": True, "log_json": True},
    Environment.PRODUCTION: {"log_level": "INFO", "docs_enabled": False, "log_json": True},
}


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

    @field_validator("preload", mode="before")
    @classmethod
    def _split_preload(cls, value: object) -> object:
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

    def summary(self) -> dict[str, object]:
        """The settings as logged at start; secrets never appear here."""
        return {name: str(value) for name, value in self.model_dump().items()}
