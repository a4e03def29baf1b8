"""For each image: its size, the seconds from `docker run` to ready and to healthy, and the
seconds a rebuild takes after a code-only change.

    python bench/images.py [--runs N] [--env prod ...]

Uses the images as `make images` tagged them; PYTHON_IMAGE (default: the local base)
must be the base they were built on, or the rebuild finds no cache. Ready: /health/ready
answers 200. Healthy: the engine's HEALTHCHECK agrees (it checks every second). Runs
everything on loopback, and removes what it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "test", "staging", "prod")
SERVING = ("dev", "staging", "prod")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges"]  # fmt: skip


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def is_ready(port: int) -> bool:
    try:
        with OPENER.open(f"http://127.0.0.1:{port}/health/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def key_file_options(directory: Path) -> list[str]:
    """Staging and prod refuse to start without a key file: mount one, as a secret."""
    keys = directory / "api_keys"
    keys.write_text("admin:bench-images-key-0123456789\n")
    keys.chmod(0o644)
    return [
        "-v",
        f"{keys}:/run/secrets/api_keys:ro",
        "-e",
        "AIO_API_KEYS_FILE=/run/secrets/api_keys",
    ]


def start_to_healthy(image: str, hardened: bool, keys: list[str]) -> tuple[float, float]:
    started = time.monotonic()
    options = [*(HARDENED if hardened else []), *keys]
    cid = docker("run", "-d", "-p", "127.0.0.1::8000", *options, image).strip()
    try:
        port = int(docker("port", cid, "8000/tcp").splitlines()[0].rsplit(":", 1)[1])
        while not is_ready(port):
            state = json.loads(docker("inspect", cid))[0]["State"]
            if not state["Running"] or time.monotonic() - started > 120:
                raise SystemExit(f"{image} never became ready:\n{docker('logs', cid)}")
            time.sleep(0.02)
        ready = time.monotonic() - started
        while docker("inspect", "-f", "{{.State.Health.Status}}", cid).strip() != "healthy":
            time.sleep(0.05)
        return ready, time.monotonic() - started
    finally:
        docker("rm", "-f", cid)


def code_only_rebuild(env: str, base: str) -> float:
    """Seconds to rebuild the image after a change to one module, all else equal: the same
    base and the same label values (a new revision would also redo the label's step)."""
    image = json.loads(docker("image", "inspect", f"alt-las/ai-orchestrator:{env}"))[0]
    labels = image["Config"]["Labels"]
    args = [f"PYTHON_IMAGE={base}"] + [
        f"{key.upper()}={labels[f'org.opencontainers.image.{key}']}"
        for key in ("version", "revision", "source")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "context"
        ignore = shutil.ignore_patterns(".git", ".venv*", ".stamps", "__pycache__", "*.gguf",
                                        "*.onnx", "*.json", ".*_cache")  # fmt: skip
        shutil.copytree(ROOT, context, ignore=ignore, symlinks=True)
        module = context / "src" / "ai_orchestrator" / "api" / "app.py"
        module.write_text(module.read_text() + f"\n# code-only change {time.time()}\n")
        tag = f"alt-las/ai-orchestrator:{env}-bench-{os.getpid()}"
        started = time.monotonic()
        subprocess.run(
            ["docker", "build", "-q", "-f", str(context / f"Dockerfile.{env}"), "-t", tag,
             *(word for arg in args for word in ("--build-arg", arg)), str(context)],
            check=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
        seconds = time.monotonic() - started
        docker("rmi", tag)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per image (median shown)")
    parser.add_argument("--env", action="append", choices=ENVIRONMENTS)
    args = parser.parse_args()
    base = os.environ.get("PYTHON_IMAGE") or "alt-las/python-base:3.11-bookworm-local"
    keys = key_file_options(Path(tempfile.mkdtemp(prefix="bench-images-")))
    print(f"{'image':34} {'size MB':>8} {'ready s':>8} {'healthy s':>10} {'rebuild s':>10}")
    for env in args.env or ENVIRONMENTS:
        image = f"alt-las/ai-orchestrator:{env}"
        size = json.loads(docker("image", "inspect", image))[0]["Size"] / 1e6
        ready = healthy = "-"
        if env in SERVING:
            hardened = env != "dev"
            runs = [start_to_healthy(image, hardened, keys) for _ in range(args.runs)]
            ready = f"{statistics.median(r for r, _ in runs):.2f}"
            healthy = f"{statistics.median(h for _, h in runs):.2f}"
        rebuild = code_only_rebuild(env, base)
        print(f"{image:34} {size:8.0f} {ready:>8} {healthy:>10} {rebuild:10.1f}", flush=True)


if __name__ == "__main__":
    main()
