"""ONNX Runtime backend: classifiers and general tensor models."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ai_orchestrator.backends import import_library
from ai_orchestrator.backends.base import Backend, Classification, ModelHandle, TensorSpec
from ai_orchestrator.catalogue import CatalogueEntry
from ai_orchestrator.errors import InvalidInput, ModelLoadFailed, shown

# ONNX Runtime 1.29 and later keep a device id under ~/.cache and send usage events out
# unless this is set before the library is first imported. A self-hosted service sends
# nothing anywhere, and on a read-only root the attempt also writes a warning to stderr
# outside the JSON log. An operator's own value is left alone.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# ONNX type strings -> Open Inference Protocol datatypes and numpy dtypes.
ONNX_TYPES: dict[str, tuple[str, type[np.generic]]] = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(bool)": ("BOOL", np.bool_),
}

# numpy dtypes -> Open Inference Protocol datatypes.
DATATYPE_NAMES = {np.dtype(dtype): name for name, dtype in ONNX_TYPES.values()}


def _listed(names: set[str]) -> str:
    """Tensor names for an error message; a client's may be of any number and length."""
    return ", ".join(map(shown, sorted(names)[:8])) + (", ..." if len(names) > 8 else "")


def _spec(node: Any) -> TensorSpec:
    datatype = ONNX_TYPES.get(node.type, (node.type, np.float32))[0]
    shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return TensorSpec(name=node.name, datatype=datatype, shape=shape)


# Work expected to take less than this runs on the event loop instead of a thread.
QUICK_SECONDS = 0.0005


class OnnxHandle(ModelHandle):
    def __init__(self, session: Any) -> None:
        self._session = session
        # Measured cost of one row, smoothed; unknown (infinite) until the first call.
        self._seconds_per_row = float("inf")
        self._inputs = [_spec(node) for node in session.get_inputs()]
        self._outputs = [_spec(node) for node in session.get_outputs()]
        self._input_dtypes = {
            node.name: ONNX_TYPES.get(node.type, ("", np.float32))[1]
            for node in session.get_inputs()
        }

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self._inputs, self._outputs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {spec.name for spec in self._inputs}
        if missing := expected - inputs.keys():
            raise InvalidInput(f"missing input tensor(s): {_listed(missing)}")
        if unknown := inputs.keys() - expected:
            raise InvalidInput(f"unknown input tensor(s): {_listed(unknown)}")
        feeds = {}
        for spec in self._inputs:
            array = np.asarray(inputs[spec.name])
            # Never converted: 64 BOOLs or FP64 values would run as some other input.
            if array.dtype != self._input_dtypes[spec.name]:
                given = DATATYPE_NAMES.get(array.dtype, str(array.dtype))
                raise InvalidInput(
                    f"input {spec.name!r} is {spec.datatype} in the model, not {given}"
                )
            _check_shape(spec, array.shape)
            feeds[spec.name] = array
        rows = len(next(iter(feeds.values()))) if feeds else 1
        values = self._timed_run(feeds, rows)
        return {spec.name: value for spec, value in zip(self._outputs, values, strict=True)}

    def _timed_run(self, feeds: dict[str, np.ndarray], rows: int) -> list[Any]:
        """session.run, keeping a smoothed cost per row for ``is_quick``."""
        started = time.perf_counter()
        values: list[Any] = self._session.run(None, feeds)
        per_row = (time.perf_counter() - started) / max(rows, 1)
        previous = self._seconds_per_row
        self._seconds_per_row = (
            per_row if previous == float("inf") else 0.8 * previous + 0.2 * per_row
        )
        return values

    def is_quick(self, rows: int) -> bool:
        return rows * self._seconds_per_row < QUICK_SECONDS

    def classify(self, rows: np.ndarray) -> Classification:
        if len(self._inputs) != 1 or len(self._outputs) < 2:
            raise InvalidInput("this model is not a single-input classifier")
        spec = self._inputs[0]
        feed = np.asarray(rows, dtype=self._input_dtypes[spec.name])
        _check_shape(spec, feed.shape)
        labels, probabilities = self._timed_run({spec.name: feed}, len(feed))[:2]
        return Classification(
            labels=[int(label) for label in labels],
            probabilities=np.asarray(probabilities, dtype=np.float64).round(6).tolist(),
        )

    def unload(self) -> None:
        # The session's memory is freed when its last reference goes.
        self._session = None


def _check_shape(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidInput(
            f"input {spec.name!r} has shape {list(shape)}, the model expects {spec.shape} "
            "(-1 is any size)"
        )


class OnnxBackend(Backend):
    name = "onnxruntime"

    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        ort: Any = import_library("onnxruntime", self.name, "onnxruntime")
        options = ort.SessionOptions()
        # Set explicitly: left at 0, ONNX Runtime starts a thread per core for every
        # session, and several sessions plus llama.cpp oversubscribe two cores.
        options.intra_op_num_threads = self.settings.onnx_intra_op_threads
        options.inter_op_num_threads = self.settings.onnx_inter_op_threads
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # the library raises its own untyped errors
            raise ModelLoadFailed(
                f"model {entry.id!r}: ONNX Runtime refused the file "
                f"{entry.path}: {str(exc).replace(str(path), str(entry.path))}"
            ) from exc
        return OnnxHandle(session)
