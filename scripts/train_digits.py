"""Train the embedded default classifier on scikit-learn's bundled handwritten digits.

Build-time only: needs the packages in requirements/build.txt. Writes, into the model
directory, the ONNX model, its held-out split and a record of the held-out accuracy, so
that the service (which has no scikit-learn) can be checked against the recorded figure.
The training is deterministic: same seed and same locked versions give the same bytes,
and the catalogue pins the resulting sha256.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# Before ONNX Runtime is imported, which otherwise sends usage events out from the build
# (see ai_orchestrator/backends/onnx.py).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime as ort
import sklearn
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

SEED = 20261203
TEST_SIZE = 0.2
MODEL_NAME = "digits-classifier"


def train(model_dir: Path) -> dict[str, object]:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    # A random forest rather than a linear model: its splits sit halfway between the
    # integer pixel values, so the trained bytes do not depend on which BLAS kernel the
    # CPU selects, and the pinned sha256 holds on any machine.
    model = RandomForestClassifier(n_estimators=60, max_depth=12, random_state=SEED, n_jobs=1)
    model.fit(x_train, y_train)

    # zipmap off: probabilities come out as one float tensor instead of a list of dicts.
    onx = to_onnx(model, x_train[:1], options={"zipmap": False}, target_opset=17)
    model_path = model_dir / f"{MODEL_NAME}.onnx"
    model_path.write_bytes(onx.SerializeToString())

    # The recorded accuracy is the ONNX model's, since that is what the service runs.
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels = session.run(None, {session.get_inputs()[0].name: x_test})[0]
    record = {
        "model": MODEL_NAME,
        "dataset": "sklearn.datasets.load_digits",
        "algorithm": "RandomForestClassifier",
        "seed": SEED,
        "test_size": TEST_SIZE,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "heldout_accuracy": float(np.mean(labels == y_test)),
        "sklearn_heldout_accuracy": float(model.score(x_test, y_test)),
        "sklearn_version": sklearn.__version__,
    }
    (model_dir / f"{MODEL_NAME}.accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    heldout = {"inputs": x_test.astype(int).tolist(), "labels": y_test.tolist()}
    (model_dir / f"{MODEL_NAME}.heldout.json").write_text(json.dumps(heldout) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    args.model_dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(train(args.model_dir)))


if __name__ == "__main__":
    main()
