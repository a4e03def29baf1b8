"""Open Inference Protocol (v2) REST surface for tensor models run by ONNX Runtime."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ai_orchestrator import __version__
from ai_orchestrator.api.deps import orchestrator
from ai_orchestrator.api.errors import envelope
from ai_orchestrator.api.schemas import Body
from ai_orchestrator.backends.onnx import DATATYPE_NAMES
from ai_orchestrator.catalogue import Task
from ai_orchestrator.errors import InvalidInput, shown
from ai_orchestrator.service import Orchestrator

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
Core = Annotated[Orchestrator, Depends(orchestrator)]

# Open Inference Protocol datatypes -> numpy dtypes.
DATATYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


class InferInput(BaseModel):
    name: str = Field(min_length=1)
    shape: list[StrictInt] = Field(min_length=1, max_length=8)
    datatype: str
    data: list[Any]


class RequestedOutput(BaseModel):
    name: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(Body):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    # Which outputs to return; all of them when left out.
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "alt-las-ai-orchestrator", "version": __version__, "extensions": []}


@router.get("/health/live", summary="Server liveness")
@router.head("/health/live", include_in_schema=False)
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server readiness", response_model=None)
@router.head("/health/ready", include_in_schema=False, response_model=None)
async def server_ready(core: Core) -> Any:
    if not core.unready_preloads():
        return {"ready": True}
    return envelope(503, "not_ready", "preload models are not ready yet")


@router.get("/models/{model_id}/ready", summary="Model readiness", response_model=None)
async def model_ready(model_id: str, core: Core) -> Any:
    # As for its metadata and infer: a chat model is not a tensor model here.
    core.entry_for(model_id, frozenset({Task.TENSOR, Task.CLASSIFICATION}))
    if core.models.is_ready(model_id):
        return {"name": model_id, "ready": True}
    return envelope(503, "model_not_ready", f"model {model_id!r} is not loaded")


@router.get("/models/{model_id}", summary="Model metadata (loads the model)")
async def model_metadata(model_id: str, core: Core) -> dict[str, Any]:
    inputs, outputs = await core.tensor_signature(model_id)
    return {
        "name": model_id,
        "versions": [],
        "platform": "onnxruntime",
        "inputs": [vars(spec) for spec in inputs],
        "outputs": [vars(spec) for spec in outputs],
    }


@router.post("/models/{model_id}/infer", summary="Run tensors through a model")
async def infer(model_id: str, body: InferRequest, core: Core) -> dict[str, Any]:
    tensors = {tensor.name: _to_array(tensor) for tensor in body.inputs}
    if len(tensors) != len(body.inputs):
        raise InvalidInput("each input tensor name may appear only once")
    # The binary tensor extension (Triton's, KServe's) is not spoken here: refused rather
    # than answered in JSON to a client that will read the body as raw bytes.
    wants_binary = body.parameters.get("binary_data_output") or any(
        output.parameters.get("binary_data") for output in body.outputs or ()
    )
    if wants_binary:
        raise InvalidInput("binary tensor data is not supported; ask for JSON", param="outputs")
    keep_alive = body.parameters.get("keep_alive")
    if keep_alive is not None and not _finite_number(keep_alive):
        raise InvalidInput(
            "parameters.keep_alive must be a number of seconds", param="parameters.keep_alive"
        )
    results = await core.run_tensors(model_id, tensors, keep_alive)
    names = list(results) if body.outputs is None else [output.name for output in body.outputs]
    if unknown := [name for name in names if name not in results]:
        raise InvalidInput(
            f"unknown output(s) {', '.join(map(shown, unknown[:8]))}; the model has "
            f"{', '.join(map(repr, results))}",
            param="outputs",
        )
    return {
        "model_name": model_id,
        "id": body.id,
        "outputs": [_from_array(name, results[name]) for name in dict.fromkeys(names)],
    }


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int of hundreds of digits
        return False


def _to_array(tensor: InferInput) -> np.ndarray:
    name = shown(tensor.name)
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidInput(f"input {name}: unsupported datatype {shown(tensor.datatype)}")
    if any(dim < 0 for dim in tensor.shape):
        raise InvalidInput(f"input {name}: shape dimensions must not be negative")
    try:
        values = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"input {name}: data does not fit shape {tensor.shape} as {tensor.datatype}"
        ) from exc
    if not np.isfinite(values).all():
        raise InvalidInput(f"input {name}: NaN, Inf and null are not allowed")
    # float64 above also parses "1" and takes true for 1: refuse both, but for BOOL.
    # (Integers too large for int64 come out as objects: the range check below has them.)
    kind = np.asarray(tensor.data).dtype.kind
    if kind in "US" or (kind == "b" and tensor.datatype != "BOOL"):
        raise InvalidInput(f"input {name}: data must be numbers (true and false only for BOOL)")
    with np.errstate(all="ignore"):
        array = values.astype(dtype)
    # Converting silently truncates 1.5 to 1 and wraps 300 to 44 in UINT8: refuse instead.
    if not np.array_equal(array.astype(np.float64), values):
        raise InvalidInput(f"input {tensor.name!r}: values do not fit datatype {tensor.datatype}")
    return array


def _from_array(name: str, value: np.ndarray) -> dict[str, Any]:
    array = np.asarray(value)
    return {
        "name": name,
        "datatype": DATATYPE_NAMES.get(array.dtype, "BYTES"),
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }
