"""The OpenAI API surface for LLMs: models, chat completions, completions, embeddings.

Request bodies are validated here; generation itself is llama.cpp's own OpenAI-style
handling, so the responses need little more than the catalogue's model id put back.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from ai_orchestrator.api.deps import completion_tokens, metrics, orchestrator
from ai_orchestrator.api.errors import error_body
from ai_orchestrator.api.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from ai_orchestrator.catalogue import Task
from ai_orchestrator.errors import OrchestratorError
from ai_orchestrator.metrics import Metrics
from ai_orchestrator.service import GENERATION_TASKS, Orchestrator

router = APIRouter(prefix="/v1", tags=["openai"])
Core = Annotated[Orchestrator, Depends(orchestrator)]
Counts = Annotated[Metrics, Depends(metrics)]
_STARTED = int(time.time())


@router.get("/models", summary="Models, in the OpenAI list shape")
async def list_models(core: Core) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": entry.id, "object": "model", "created": _STARTED, "owned_by": "alt-las"}
            for entry in core.catalogue
        ],
    }


@router.post(
    "/chat/completions", summary="Chat completion, optionally streamed", response_model=None
)
async def chat_completions(body: ChatCompletionRequest, core: Core, counts: Counts) -> Any:
    core.entry_for(body.model, frozenset({Task.CHAT}))
    request = {
        "messages": [message.model_dump(exclude_none=True) for message in body.messages],
        **body.backend_options(),
    }
    return await _respond(core, counts, body.model, "chat", request, body)


@router.post("/completions", summary="Text completion, optionally streamed", response_model=None)
async def completions(body: CompletionRequest, core: Core, counts: Counts) -> Any:
    core.entry_for(body.model, GENERATION_TASKS)
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    request = {"prompt": prompt, **body.backend_options()}
    return await _respond(core, counts, body.model, "completion", request, body)


@router.post("/embeddings", summary="Embeddings of one or more texts")
async def embeddings(body: EmbeddingRequest, core: Core) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    result = await core.embed(body.model, texts)
    encode = _base64_floats if body.encoding_format == "base64" else list
    return {
        "object": "list",
        "model": body.model,
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(result.vectors)
        ],
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }


def _base64_floats(vector: list[float]) -> str:
    """The OpenAI client's compact form: little-endian float32 bytes, base64-encoded."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _usage_wanted(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


async def _respond(
    core: Orchestrator,
    counts: Metrics,
    model: str,
    kind: str,
    request: dict[str, Any],
    body: ChatCompletionRequest | CompletionRequest,
) -> Any:
    if not body.stream:
        generation = await core.generate(model, kind, request)
        counts.count_tokens(model, completion_tokens(generation.response))
        return {**generation.response, "model": model}
    chunks = core.stream(model, kind, {**request, "stream": True})
    # The first chunk is awaited before the response starts, so that an unknown model or
    # a failed load still gets a proper status code instead of a broken stream.
    first = await anext(chunks, None)
    return StreamingResponse(
        _events(first, chunks, model, _usage_wanted(body), counts),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    first: dict[str, Any] | None,
    rest: AsyncIterator[dict[str, Any]],
    model: str,
    usage: bool,
    counts: Metrics,
) -> AsyncIterator[bytes]:
    try:
        if first is not None:
            yield _event(first, model, usage)
        async for chunk in rest:
            # llama.cpp puts usage on the last chunk whether or not the client asked.
            counts.count_tokens(model, completion_tokens(chunk))
            yield _event(chunk, model, usage)
    except OrchestratorError as exc:
        yield b"data: " + error_body(exc) + b"\n\n"
    yield b"data: [DONE]\n\n"


def _event(chunk: dict[str, Any], model: str, usage: bool) -> bytes:
    chunk = {**chunk, "model": model}
    if not usage:
        chunk.pop("usage", None)
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
