"""The serving images' HEALTHCHECK: its options, and its command run against a stand-in
for the service."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.static_docker.dockerfiles import SERVING, parse

# Docker 20.10 has no --start-interval: the interval alone decides how soon after ready
# the engine reports healthy (issue 3: healthy within 5 s of start).
INTERVAL = "1s"


def healthcheck(env: str) -> tuple[dict[str, str], list[str]]:
    """The options and the exec-form command of the final stage's HEALTHCHECK."""
    (instruction,) = parse(env).final.all("HEALTHCHECK")
    options, _, command = instruction.args.partition("CMD ")
    pairs = (word.removeprefix("--").partition("=") for word in options.split())
    argv: list[str] = json.loads(command)
    return {key: value for key, _, value in pairs}, argv


@pytest.mark.parametrize("env", SERVING)
def test_healthcheck_runs_every_second_with_a_timeout_start_period_and_retries(
    env: str,
) -> None:
    options, _ = healthcheck(env)
    assert options["interval"] == INTERVAL
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    assert int(options["retries"]) >= 1


@pytest.mark.parametrize("env", SERVING)
def test_healthcheck_is_isolated_python_importing_only_socket(env: str) -> None:
    _, argv = healthcheck(env)
    assert argv[:4] == ["/opt/venv/bin/python", "-I", "-S", "-c"]
    tree = ast.parse(argv[4])
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert all(isinstance(node, ast.Import) for node in imports)
    # os and sys are loaded at every interpreter start; socket is the only real import.
    assert {alias.name for node in imports for alias in node.names} == {"os", "socket", "sys"}
    assert "/health/ready" in argv[4]


def test_serving_images_share_one_healthcheck() -> None:
    assert len({json.dumps(healthcheck(env)) for env in SERVING}) == 1


@contextmanager
def stand_in(status_line: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection-at-a-time server on loopback that answers every request with
    this status line, and records the requests it read."""
    requests: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)

        def serve() -> None:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                requests.append(connection.recv(4096))
                connection.sendall(status_line + b"\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            yield server.getsockname()[1], requests
        finally:
            thread.join(15)


def run_check(port: int) -> subprocess.CompletedProcess[str]:
    _, argv = healthcheck("prod")
    return subprocess.run(
        [sys.executable, *argv[1:]],
        env={"AIO_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_passes_on_200_from_the_readiness_route_at_aio_port() -> None:
    with stand_in(b"HTTP/1.1 200 OK") as (port, requests):
        result = run_check(port)
    assert result.returncode == 0, result.stderr
    assert requests[0].startswith(b"GET /health/ready HTTP/1.0\r\n")


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 503 Service Unavailable", b"garbage"])
def test_healthcheck_fails_on_any_other_answer(status_line: bytes) -> None:
    with stand_in(status_line) as (port, _):
        assert run_check(port).returncode != 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    assert run_check(port).returncode != 0
