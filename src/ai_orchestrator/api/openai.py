"""The OpenAI API surface for LLMs: models, chat completions, completions, embeddings.

Request bodies are validated here; generation itself is llama.cpp's own OpenAI-style
handling, so the responses need little more than the catalogue's model id put back.
A model id of the form ``route:<name>`` names a route of the catalogue: its candidates are
tried in the route's order until one answers, or for a stream until one sends its first
chunk. The ``model`` field of the response names the model that answered.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ai_orchestrator.api.deps import completion_tokens, orchestrator, until_disconnected
from ai_orchestrator.api.errors import STREAM_EPILOGUE, error_body, fields_as_sent
from ai_orchestrator.api.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from ai_orchestrator.backends.base import Embeddings
from ai_orchestrator.catalogue import ROUTE_PREFIX, Task
from ai_orchestrator.errors import InferenceFailed, OrchestratorError
from ai_orchestrator.metrics import Metrics
from ai_orchestrator.orchestration import Answer, PassedOver, first_answer, rank
from ai_orchestrator.service import GENERATION_TASKS, Orchestrator

Chunks = AsyncIterator[dict[str, Any]]
log = logging.getLogger("ai_orchestrator.http")

router = APIRouter(prefix="/v1", tags=["openai"])
Core = Annotated[Orchestrator, Depends(orchestrator)]
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
async def chat_completions(body: ChatCompletionRequest, core: Core, http: Request) -> Any:
    candidates = _candidates(core, body.model, frozenset({Task.CHAT}))
    request = {
        "messages": [message.model_dump(exclude_none=True) for message in body.messages],
        **body.backend_options(),
    }
    with fields_as_sent(_as_sent(body)):
        return await _respond(core, candidates, "chat", request, body, http)


@router.post("/completions", summary="Text completion, optionally streamed", response_model=None)
async def completions(body: CompletionRequest, core: Core, http: Request) -> Any:
    candidates = _candidates(core, body.model, GENERATION_TASKS)
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    request = {"prompt": prompt, **body.backend_options()}
    with fields_as_sent(_as_sent(body)):
        return await _respond(core, candidates, "completion", request, body, http)


@router.post("/embeddings", summary="Embeddings of one or more texts", response_model=None)
async def embeddings(body: EmbeddingRequest, core: Core, http: Request) -> JSONResponse:
    texts = [body.input] if isinstance(body.input, str) else body.input
    candidates = _candidates(core, body.model, frozenset({Task.EMBEDDINGS}))

    def embed(model_id: str) -> Awaitable[Embeddings]:
        return core.embed(model_id, texts, body.keep_alive)

    if candidates is None:
        answer = Answer(body.model, await until_disconnected(http.receive, embed(body.model)))
    else:
        answer = await until_disconnected(http.receive, first_answer(candidates, embed))
    result = answer.result
    encode = _base64_floats if body.encoding_format == "base64" else list
    content = {
        "object": "list",
        "model": answer.model_id,
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(result.vectors)
        ],
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
    return JSONResponse(content, headers=_passed_over_header(answer.passed_over))


def _base64_floats(vector: list[float]) -> str:
    """The OpenAI client's compact form: little-endian float32 bytes, base64-encoded."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _as_sent(body: ChatCompletionRequest | CompletionRequest) -> dict[str, str]:
    """The core knows the count as max_tokens, whichever of the two the client sent."""
    return {"max_tokens": "max_completion_tokens"} if body.max_completion_tokens else {}


def _usage_wanted(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _candidates(core: Orchestrator, model: str, tasks: frozenset[Task]) -> list[str] | None:
    """The ranked candidates of a route, or None for a plain model id (checked here)."""
    if not model.startswith(ROUTE_PREFIX):
        core.entry_for(model, tasks)
        return None
    route = core.catalogue.route(model)
    if route.task not in tasks:
        core.entry_for(route.candidates[0], tasks)  # raises the usual unsupported_task
    return rank(core.catalogue, core.latency, route.candidates, route.strategy)


async def _respond(
    core: Orchestrator,
    candidates: list[str] | None,
    kind: str,
    request: dict[str, Any],
    body: ChatCompletionRequest | CompletionRequest,
    http: Request,
) -> Any:
    keep_alive, usage = body.keep_alive, _usage_wanted(body)
    if not body.stream:
        if candidates is None:
            work = core.generate(body.model, kind, request, keep_alive)
            generation = await until_disconnected(http.receive, work)
            http.app.state.metrics.count_tokens(body.model, completion_tokens(generation.response))
            return _as_openai(generation.response, body.model)
        done = await until_disconnected(
            http.receive,
            first_answer(
                candidates, lambda model_id: core.generate(model_id, kind, request, keep_alive)
            ),
        )
        content = _as_openai(done.result.response, done.model_id)
        http.app.state.metrics.count_tokens(done.model_id, completion_tokens(content))
        return JSONResponse(content, headers=_passed_over_header(done.passed_over))

    async def start(model_id: str) -> tuple[dict[str, Any], Chunks]:
        chunks = core.stream(model_id, kind, {**request, "stream": True}, keep_alive)
        # The first chunk is awaited before the response starts, so that an unknown model
        # or a failed load still gets a proper status code (or, in a route, the next
        # candidate) instead of a broken stream.
        first = await anext(chunks, None)
        if first is None:
            raise InferenceFailed(f"model {model_id!r} ended its stream without any output")
        return first, chunks

    if candidates is None:
        answer: Answer[tuple[dict[str, Any], Chunks]] = Answer(body.model, await start(body.model))
    else:
        answer = await first_answer(candidates, start)
    first, rest = answer.result
    events = _Events(first, rest, answer.model_id, usage, http.app.state.metrics)
    http.scope[STREAM_EPILOGUE] = events.epilogue
    return StreamingResponse(
        aiter(events),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **_passed_over_header(answer.passed_over),
        },
    )


def _passed_over_header(passed_over: list[PassedOver]) -> dict[str, str]:
    if not passed_over:
        return {}
    return {"X-Passed-Over": ", ".join(f"{p.model_id}={p.code}" for p in passed_over)}


class _Events:
    """A stream's server-sent events. Its epilogue ends the stream as a failure: a chunk
    with finish_reason "error", the error in the one envelope, then [DONE]; never a
    silent truncation. The request middleware sends it too, when the shutdown grace
    cuts the stream short."""

    def __init__(
        self, first: dict[str, Any], rest: Chunks, model: str, usage: bool, counts: Metrics
    ) -> None:
        self.first, self.rest, self.last = first, rest, first
        self.model, self.usage, self.counts = model, usage, counts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield _event(self.first, self.model, self.usage)
            async for chunk in self.rest:
                # llama.cpp puts usage on the last chunk whether or not the client asked.
                self.counts.count_tokens(self.model, completion_tokens(chunk))
                self.last = chunk
                yield _event(chunk, self.model, self.usage)
        except Exception as exc:
            if not isinstance(exc, OrchestratorError):
                log.exception("unexpected error mid-stream")
                exc = OrchestratorError("internal error; see the service log for the request id")
            yield self.epilogue(exc)
            return
        yield b"data: [DONE]\n\n"

    def epilogue(self, exc: OrchestratorError) -> bytes:
        return (
            _event(_error_finish(self.last), self.model, usage=False)
            + b"data: "
            + error_body(exc)
            + b"\n\n"
            + b"data: [DONE]\n\n"
        )


def _error_finish(last: dict[str, Any]) -> dict[str, Any]:
    completion = last.get("object") == "text_completion"
    choice: dict[str, Any] = {"index": 0, "finish_reason": "error"}
    if completion:
        choice["text"] = ""
    else:
        choice["delta"] = {}
    return {
        "id": last.get("id", ""),
        "object": last.get("object", "chat.completion.chunk"),
        "created": last.get("created", int(time.time())),
        "choices": [choice],
    }


def _as_openai(response: dict[str, Any], model: str) -> dict[str, Any]:
    """llama.cpp's answer as OpenAI's: without its timings and its build tag (b0-unknown
    in a wheel) as system_fingerprint, and with a completion's own id prefix."""
    shaped = {**response, "model": model}
    shaped.pop("timings", None)
    shaped.pop("system_fingerprint", None)
    identifier = shaped.get("id")
    if shaped.get("object", "").startswith("text_completion") and isinstance(identifier, str):
        shaped["id"] = "cmpl-" + identifier.removeprefix("chatcmpl-")
    return shaped


def _event(chunk: dict[str, Any], model: str, usage: bool) -> bytes:
    chunk = _as_openai(chunk, model)
    if not usage:
        chunk.pop("usage", None)
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
