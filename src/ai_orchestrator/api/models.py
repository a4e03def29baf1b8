"""The ALT_LAS API: the catalogue, model lifecycle and one inference route for all tasks."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from ai_orchestrator.api.deps import completion_tokens, orchestrator, until_disconnected
from ai_orchestrator.api.direct import read_body, send_json
from ai_orchestrator.api.errors import fields_as_sent, first_error, invalid_body
from ai_orchestrator.api.schemas import ChatMessage, GenerationParameters, InferenceRequest
from ai_orchestrator.catalogue import CatalogueEntry, Task
from ai_orchestrator.errors import InvalidInput, UnsupportedTask
from ai_orchestrator.metrics import Metrics
from ai_orchestrator.service import Orchestrator

router = APIRouter(prefix="/api", tags=["models"])
Core = Annotated[Orchestrator, Depends(orchestrator)]
_MESSAGES = TypeAdapter(list[ChatMessage])


def describe(core: Orchestrator, entry: CatalogueEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "task": entry.task.value,
        "backend": entry.backend,
        "path": str(entry.path),
        "sha256": entry.sha256,
        "metadata": entry.metadata,
        "pinned": entry.pinned,
        "status": asdict(core.models.status(entry.id)),
        "latency_p50_ms": _ms(core.latency.p50(entry.id)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class Inference:
    """``POST /api/inference``, served by DirectRoutes as a plain ASGI app: this is the
    busiest route, and FastAPI's request handling costs more than a classifier call."""

    summary = "Run one request on a catalogue model"

    def __init__(self, core: Orchestrator, metrics: Metrics) -> None:
        self.core = core
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # pydantic-core parses the JSON straight from bytes, in one pass.
        try:
            body = InferenceRequest.model_validate_json(await read_body(receive))
        except ValidationError as exc:
            raise invalid_body(exc.errors(include_url=False)) from None
        core = self.core
        entry = core.entry_for(body.model_id)
        started = time.perf_counter()
        work = run_one(core, entry, body.inputs, body.parameters, body.keep_alive)
        # Only generation is long enough to be worth watching the connection for.
        generating = entry.task in (Task.CHAT, Task.TEXT_GENERATION)
        outputs, usage = await (until_disconnected(receive, work) if generating else work)
        if generating:
            self.metrics.count_tokens(entry.id, completion_tokens({"usage": usage}))
        await send_json(
            send,
            {
                "model_id": entry.id,
                "task": entry.task.value,
                "outputs": outputs,
                "usage": usage,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )

    @staticmethod
    def openapi() -> dict[str, Any]:
        """The route's OpenAPI operation, since FastAPI documents only its own routes."""
        response = {"description": "The model's outputs", "content": {"application/json": {}}}
        return {
            "tags": ["models"],
            "summary": Inference.summary,
            "operationId": "inference_api_inference_post",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": InferenceRequest.model_json_schema()}},
            },
            "responses": {"200": response},
        }


Outputs = tuple[dict[str, Any], dict[str, Any] | None]


async def run_one(
    core: Orchestrator,
    entry: CatalogueEntry,
    inputs: str | list[Any],
    parameters: dict[str, Any],
    keep_alive: float | None,
) -> Outputs:
    """One ALT_LAS inference on one model: ``outputs`` and ``usage`` by the model's task."""
    with fields_as_sent(_AS_SENT):
        if entry.task is Task.CLASSIFICATION:
            result = await core.classify(entry.id, inputs, keep_alive)
            return {"labels": result.labels, "probabilities": result.probabilities}, None
        if entry.task in (Task.CHAT, Task.TEXT_GENERATION):
            return await _generate(core, entry, inputs, parameters, keep_alive)
        if entry.task is Task.EMBEDDINGS:
            texts = [inputs] if isinstance(inputs, str) else inputs
            if (
                not isinstance(texts, list)
                or not texts
                or not all(isinstance(text, str) and text for text in texts)
            ):
                raise InvalidInput("inputs must be a string or a list of non-empty strings")
            embedded = await core.embed(entry.id, texts, keep_alive)
            return {"embeddings": embedded.vectors}, None
        raise UnsupportedTask(
            f"model {entry.id!r} has task {entry.task.value!r}; use /v2/models/{entry.id}/infer"
        )


# The core names the OpenAI API's fields; here the text comes in as "inputs", and the
# sampling settings inside "parameters".
_AS_SENT = {
    **dict.fromkeys(("input", "prompt", "messages"), "inputs"),
    **{name: f"parameters.{name}" for name in GenerationParameters.model_fields},
}


@router.get("/models", summary="The catalogue, with each model's state")
async def list_models(core: Core) -> dict[str, Any]:
    return {
        "models": [describe(core, entry) for entry in core.catalogue],
        "routes": [route.model_dump(mode="json") for route in core.catalogue.routes.values()],
        "residency": {
            "budget_bytes": core.models.budget_bytes or None,
            "resident_bytes": core.models.resident_bytes(),
        },
    }


@router.get("/models/{model_id}", summary="One catalogue entry and its state")
async def get_model(model_id: str, core: Core) -> dict[str, Any]:
    return describe(core, core.catalogue.get(model_id))


@router.get("/models/{model_id}/status", summary="One model's lifecycle state")
async def model_status(model_id: str, core: Core) -> dict[str, Any]:
    return asdict(core.models.status(model_id))


@router.post("/models/{model_id}/load", summary="Load a model and wait until it is ready")
async def load_model(model_id: str, core: Core) -> dict[str, Any]:
    return asdict(await core.models.load(model_id))


@router.post(
    "/models/{model_id}/unload", summary="Unload a model once its in-flight requests finish"
)
async def unload_model(model_id: str, core: Core) -> dict[str, Any]:
    return asdict(await core.models.unload(model_id))


async def _generate(
    core: Orchestrator,
    entry: CatalogueEntry,
    inputs: str | list[Any],
    parameters: dict[str, Any],
    keep_alive: float | None,
) -> Outputs:
    try:
        options = GenerationParameters.model_validate(parameters).backend_options()
    except ValidationError as exc:
        field, message = first_error(exc.errors())
        raise InvalidInput(
            f"parameters.{message}" if field else f"parameters: {message}",
            param=f"parameters.{field}" if field else "parameters",
        ) from None
    if entry.task is Task.CHAT:
        request = {"messages": _as_messages(inputs), **options}
        generation = await core.generate(entry.id, "chat", request, keep_alive)
        choice = generation.response["choices"][0]
        text = choice["message"].get("content") or ""
    else:
        if not isinstance(inputs, str) or not inputs:
            raise InvalidInput("inputs must be a non-empty prompt string for this model")
        request = {"prompt": inputs, **options}
        generation = await core.generate(entry.id, "completion", request, keep_alive)
        choice = generation.response["choices"][0]
        text = choice.get("text", "")
    outputs = {"text": text, "finish_reason": choice.get("finish_reason")}
    return outputs, generation.response.get("usage")


def _as_messages(inputs: str | list[Any]) -> list[dict[str, Any]]:
    if isinstance(inputs, str):
        if not inputs:
            raise InvalidInput("inputs must be a non-empty prompt or a list of messages")
        return [{"role": "user", "content": inputs}]
    if not inputs:
        raise InvalidInput("inputs must hold at least one message")
    try:
        messages = _MESSAGES.validate_python(inputs)
    except ValidationError as exc:
        raise InvalidInput(f"inputs: {first_error(exc.errors())[1]}") from None
    return [message.model_dump(exclude_none=True) for message in messages]
