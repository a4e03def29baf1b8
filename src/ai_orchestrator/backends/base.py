"""The interface every backend implements: load a file into a handle, run it, unload it."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ai_orchestrator.catalogue import CatalogueEntry
from ai_orchestrator.errors import UnsupportedTask
from ai_orchestrator.settings import Settings


@dataclass(frozen=True)
class Classification:
    labels: list[int]
    probabilities: list[list[float]]


@dataclass
class Generation:
    """A finished LLM answer, in the OpenAI shape llama.cpp already produces."""

    response: dict[str, Any]


@dataclass
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int = 0


# Called with every streamed chunk; returning True asks the backend to stop generating.
ChunkSink = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a tensor model; -1 in ``shape`` is a free dimension."""

    name: str
    datatype: str
    shape: list[int] = field(default_factory=list)


class ModelHandle(ABC):
    """A loaded model. Methods are called from worker threads, possibly concurrently;
    implementations must be safe for that or serialise internally."""

    def classify(self, rows: np.ndarray) -> Classification:
        raise UnsupportedTask("this model does not classify")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise UnsupportedTask("this model does not take tensors")

    def is_quick(self, rows: int) -> bool:
        """Whether a call on ``rows`` rows is cheap enough to run on the event loop.

        A hop to a worker thread costs around a tenth of a millisecond; for a small
        classifier that is several times the model's own time.
        """
        return False

    def footprint_bytes(self) -> int | None:
        """Memory the model holds, when the backend knows it better than the change in the
        process's resident memory during the load (which other threads' allocations blur).
        None lets the service measure it."""
        return None

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The tensor inputs and outputs, for metadata; empty for models without tensors."""
        return [], []

    def chat(self, request: dict[str, Any]) -> Generation:
        raise UnsupportedTask("this model does not chat")

    def complete(self, request: dict[str, Any]) -> Generation:
        raise UnsupportedTask("this model does not complete text")

    def generate(self, kind: str, request: dict[str, Any], stop: threading.Event) -> Generation:
        """Run a chat or completion to the end, or until ``stop`` is set; backends that
        cannot stop early just finish."""
        return self.chat(request) if kind == "chat" else self.complete(request)

    def stream(self, kind: str, request: dict[str, Any], sink: ChunkSink) -> None:
        """Generate for a chat or completion request, passing each chunk to ``sink``."""
        raise UnsupportedTask("this model does not stream")

    def embed(self, texts: list[str]) -> Embeddings:
        raise UnsupportedTask("this model does not produce embeddings")

    @abstractmethod
    def unload(self) -> None:
        """Release the model's memory. Called once, when no request uses the handle."""


class Backend(ABC):
    """Loads model files of one format. Constructed once per service with its settings."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        """Load a file whose hash has already been checked. Raise ModelLoadFailed when the
        library refuses it; runs in a worker thread."""
