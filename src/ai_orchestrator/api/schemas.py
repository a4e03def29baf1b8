"""Request bodies of the ALT_LAS and OpenAI APIs. Validation here gives 400s that name
the field; the core then gets clean values."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ai_orchestrator.catalogue import Strategy, Task

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1

KEEP_ALIVE_DOC = (
    "Seconds the model stays loaded after this request (negative: for ever); "
    "replaces the catalogue's keep-alive for this model from now on."
)


# Seconds, finite; not true for 1 nor NaN for ever.
KeepAlive = Annotated[StrictFloat | None, Field(allow_inf_nan=False, description=KEEP_ALIVE_DOC)]


class Body(BaseModel):
    """A request body that FastAPI parses. Its JSON parser takes lone UTF-16 surrogates
    ("\\ud800"), which pydantic's own parser (that of /api/inference) refuses and on which
    llama.cpp fails with a message of its own: refused here as pydantic refuses them."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        try:
            # The C encoder: one pass over a body of any size at C speed.
            json.dumps(data, ensure_ascii=False, default=lambda _: None).encode()
        except UnicodeEncodeError:
            problem = "a string holds a lone UTF-16 surrogate"
        except RecursionError:
            # The parser took a depth that the encoder does not: a few hundred levels.
            problem = "the body is nested too deeply"
        else:
            return data
        raise PydanticCustomError("json_invalid", "Invalid JSON: {error}", {"error": problem})


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=128)
    inputs: str | list[Any]
    parameters: dict[str, Any] = Field(default_factory=dict)
    keep_alive: KeepAlive = None


class OrchestratedRequest(Body):
    """Either a ``route`` from the catalogue, or a ``task`` with optional ``candidates``
    (every model of the task when left out) and a ``strategy``."""

    model_config = ConfigDict(extra="forbid")

    task: Task | None = None
    route: str | None = None
    strategy: Strategy | None = None
    candidates: list[str] | None = Field(default=None, min_length=1, max_length=16)
    inputs: str | list[Any]
    parameters: dict[str, Any] = Field(default_factory=dict)
    keep_alive: KeepAlive = None


class BatchRequest(Body):
    """Many inputs for one model; each item is what ``inputs`` is in /api/inference."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=128)
    inputs: list[Any] = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] = Field(default_factory=dict)
    keep_alive: KeepAlive = None


class ParallelRequest(Body):
    """One input for several models, answered side by side."""

    model_config = ConfigDict(extra="forbid")

    model_ids: list[str] = Field(min_length=1, max_length=16)
    inputs: str | list[Any]
    parameters: dict[str, Any] = Field(default_factory=dict)
    keep_alive: KeepAlive = None


class EnsembleRequest(Body):
    """Classification by several models combined; each member must answer by the deadline."""

    model_config = ConfigDict(extra="forbid")

    model_ids: list[str] = Field(min_length=1, max_length=16)
    inputs: list[Any]
    method: Literal["vote", "average"] = "vote"
    deadline_ms: float | None = Field(default=None, gt=0)
    keep_alive: KeepAlive = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """A chat message. Only text is supported: extra keys (tool calls, images) are refused
    here rather than passed to llama.cpp, which would fail on them."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, max_length=64)


class StreamOptions(BaseModel):
    include_usage: bool = False


# Each unsupported OpenAI parameter, with the values that ask for nothing.
_INERT: dict[str, tuple[Any, ...]] = {
    "tools": ([],),
    "tool_choice": ("none",),
    "functions": ([],),
    "function_call": ("none",),
    "response_format": ({"type": "text"},),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    # Text completions only.
    "echo": (False,),
    "suffix": ("",),
    "best_of": (1,),
    # Embeddings only: the vectors have the model's own size.
    "dimensions": (),
}


def _inert(value: Any, info: ValidationInfo) -> None:
    """An unsupported parameter passes only with a value that asks for nothing."""
    if value is None or value in _INERT[str(info.field_name)]:
        return None
    raise ValueError("not supported by this service")


class GenerationParameters(Body):
    """Sampling parameters shared by chat and text completions."""

    model_config = ConfigDict(extra="ignore")

    # llama.cpp reads these as 32-bit integers: larger values would wrap around.
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=0, le=UINT32_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    n: StrictInt = Field(default=1, ge=1, le=1)
    # llama.cpp's extension (vLLM has it too): generate all max_tokens, for benchmarks.
    ignore_eos: StrictBool | None = None
    keep_alive: KeepAlive = None
    # OpenAI parameters that the service cannot honour. Refused when they ask for
    # something, so that a client never takes a plain answer for the one it asked for.
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None

    _unsupported = field_validator(
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
    )(_inert)

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        # An empty one matches at once: the answer would always be empty.
        if value == "" or (isinstance(value, list) and "" in value):
            raise ValueError("a stop sequence must not be empty")
        return value

    def backend_options(self) -> dict[str, Any]:
        """The parameters as the llama.cpp OpenAI-style request takes them."""
        options = self.model_dump(
            exclude_none=True, exclude={"n", "max_completion_tokens", "keep_alive"}
        )
        if self.max_completion_tokens is not None:
            options["max_tokens"] = self.max_completion_tokens
        return options


class ChatCompletionRequest(GenerationParameters):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None


class CompletionRequest(GenerationParameters):
    model: str = Field(min_length=1)
    prompt: str | list[str]
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    echo: Any = None
    suffix: Any = None
    best_of: Any = None

    _unsupported_here = field_validator("echo", "suffix", "best_of")(_inert)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return value


class EmbeddingRequest(Body):
    model: str = Field(min_length=1)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Any = None

    _unsupported = field_validator("dimensions")(_inert)
    keep_alive: KeepAlive = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or any(not text for text in texts):
            raise ValueError("input must be a non-empty string or a list of non-empty strings")
        return value
