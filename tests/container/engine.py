"""Helpers for the engine-level tests: the docker CLI, image builds, running containers."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "test", "staging", "prod")
LOCAL_BASE = "alt-las/python-base:3.11-bookworm-local"
# The tests build and run their own images, never the ones that `make images` or the
# README's `docker build` tag: another checkout may be building or testing on the same
# engine at the same time. A suffix from this checkout's path keeps the tags apart;
# CONTAINER_TEST_TAG_SUFFIX chooses another.
TAG_SUFFIX = os.environ.get("CONTAINER_TEST_TAG_SUFFIX") or (
    "checkout-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
)


def image_tag(env: str, *qualifiers: str) -> str:
    """This checkout's tag for an image of env: alt-las/ai-orchestrator:<env>-...-<suffix>."""
    return "alt-las/ai-orchestrator:" + "-".join((env, *qualifiers, TAG_SUFFIX))


HARDENED = (
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)
# staging and prod refuse to start without API keys: the tests mount this file as the
# secret they read (AIO_API_KEYS_FILE), and send the inference key with every request.
INFERENCE_KEY = "inference-" + secrets.token_hex(16)
ADMIN_KEY = "admin-" + secrets.token_hex(16)
KEYED_ENVIRONMENTS = ("staging", "prod")
SECRET_PATH = "/run/secrets/api_keys"


@functools.cache
def api_keys_file() -> Path:
    """The key file on the host, readable by the containers' non-root user."""
    path = Path(tempfile.mkdtemp(prefix="aio-keys-")) / "api_keys"
    path.write_text(f"inference:{INFERENCE_KEY}\nadmin:{ADMIN_KEY}\n")
    path.parent.chmod(0o755)
    path.chmod(0o644)
    return path


def key_options(image: str) -> tuple[str, ...]:
    """docker run options that give a staging or prod image its key file. The image's
    tag starts with its environment (see image_tag)."""
    if image.rsplit(":", 1)[-1].split("-")[0] not in KEYED_ENVIRONMENTS:
        return ()
    return ("-v", f"{api_keys_file()}:{SECRET_PATH}:ro", "-e", f"AIO_API_KEYS_FILE={SECRET_PATH}")


# Never through a proxy: the containers are on this machine.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def inspect(ref: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(docker("inspect", ref).stdout)
    return found[0]


@dataclass(frozen=True)
class Build:
    image: str
    seconds: float
    output: str


def build(
    env: str, tag: str, context: Path, build_args: dict[str, str], timeout: float = 1800
) -> Build:
    args = [arg for key, value in build_args.items() for arg in ("--build-arg", f"{key}={value}")]
    started = time.monotonic()
    result = subprocess.run(
        [
            "docker",
            "build",
            "-f",
            str(context / f"Dockerfile.{env}"),
            "-t",
            tag,
            *args,
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        # The classic builder, whose "Using cache" lines the rebuild test reads; it is also
        # the only one on this machine (Docker 20.10, no buildx).
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise AssertionError(f"building {tag} failed:\n{result.stdout[-6000:]}{result.stderr}")
    return Build(tag, seconds, result.stdout)


@dataclass(frozen=True)
class Container:
    id: str
    port: int
    started: float

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        options = ["--user", user] if user else []
        return docker("exec", *options, self.id, *command, check=False)

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def health(self) -> str:
        status: str = inspect(self.id)["State"].get("Health", {}).get("Status", "none")
        return status


@contextmanager
def running(image: str, *options: str, command: tuple[str, ...] = ()) -> Iterator[Container]:
    """A detached container with port 8000 published on an ephemeral loopback port."""
    started = time.monotonic()
    keys = key_options(image)
    run = docker("run", "-d", "-p", "127.0.0.1::8000", *keys, *options, image, *command)
    cid = run.stdout.strip()
    try:
        port = int(docker("port", cid, "8000/tcp").stdout.splitlines()[0].rsplit(":", 1)[1])
        yield Container(cid, port, started)
    finally:
        docker("rm", "-f", "-v", cid, check=False)


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post_json(url: str, body: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {INFERENCE_KEY}"}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        # The service's errors are the JSON envelope too.
        return error.code, json.loads(error.read())


def seconds_until_ready(container: Container, limit: float = 60.0) -> float:
    """Seconds from `docker run` until /health/ready answers 200."""
    while time.monotonic() - container.started < limit:
        try:
            if get(container.url("/health/ready"), timeout=1.0)[0] == 200:
                return time.monotonic() - container.started
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not ready within {limit}s:\n{container.logs()[-3000:]}")


def seconds_until_healthy(container: Container, limit: float = 60.0) -> float:
    """Seconds from `docker run` until the engine reports the HEALTHCHECK as healthy."""
    while time.monotonic() - container.started < limit:
        status = container.health()
        if status == "healthy":
            return time.monotonic() - container.started
        assert status in ("starting", "unhealthy"), status
        time.sleep(0.1)
    raise AssertionError(f"not healthy within {limit}s:\n{container.logs()[-3000:]}")


def listening_ports(container: Container) -> set[int]:
    """TCP ports in LISTEN state inside the container, read from /proc/net."""
    script = (
        "import pathlib\n"
        "for name in ('tcp', 'tcp6'):\n"
        "    path = pathlib.Path('/proc/net', name)\n"
        "    for line in path.read_text().splitlines()[1:] if path.exists() else []:\n"
        "        fields = line.split()\n"
        "        if fields[3] == '0A':\n"
        "            print(int(fields[1].rsplit(':', 1)[1], 16))\n"
    )
    result = container.exec("/opt/venv/bin/python", "-c", script)
    assert result.returncode == 0, result.stderr
    return {int(line) for line in result.stdout.split()}
