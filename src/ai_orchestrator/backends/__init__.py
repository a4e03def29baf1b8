"""Backends: the libraries that run a model file. Each one is imported by name only when a
model that needs it loads, so a missing library is a clear load error, not a start failure."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ai_orchestrator.errors import BackendUnavailable

if TYPE_CHECKING:
    from ai_orchestrator.backends.base import Backend

# Backend name in the catalogue -> "module:attribute" of its implementation.
BACKENDS: dict[str, str] = {
    "onnxruntime": "ai_orchestrator.backends.onnx:OnnxBackend",
    "llama_cpp": "ai_orchestrator.backends.llama:LlamaBackend",
}


def resolve_backend(name: str) -> type[Backend]:
    """Import the backend class registered under ``name``."""
    try:
        module_name, attribute = BACKENDS[name].split(":")
    except KeyError:
        raise BackendUnavailable(f"unknown backend {name!r}") from None
    module = importlib.import_module(module_name)
    backend: type[Backend] = getattr(module, attribute)
    return backend


def import_library(module: str, backend: str, package: str) -> object:
    """Import the third-party library a backend wraps, or explain what is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {backend!r} needs the Python package {package!r}, which is not "
            f"installed here ({exc})"
        ) from exc
