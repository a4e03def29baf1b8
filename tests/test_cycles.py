"""Fifty load and unload cycles of each default model, through the admin routes of a real
uvicorn: resident memory comes back near where it was after the first cycle."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, DIGITS, EMBEDDER, FIGURES, LLM, write_key_file
from tests.server import ServiceProcess

pytestmark = [pytest.mark.server, pytest.mark.llm]
MIB = 1024 * 1024
CYCLES = 50


@pytest.fixture
def idle_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        preload="",
        AIO_ENV="production",
        AIO_API_KEYS_FILE=str(write_key_file(tmp_path / "keys")),
        AIO_RATE_LIMIT_PER_S="1000000",
        AIO_LOG_LEVEL="WARNING",
        # A load that never returns is then diagnosable: SIGABRT dumps every thread.
        PYTHONFAULTHANDLER="1",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        assert process.terminate() == 0, process.log()


def cycle(service: ServiceProcess, http: httpx.Client, model: str) -> None:
    try:
        loaded = http.post(f"/api/models/{model}/load")
    except httpx.ReadTimeout:
        service.process.send_signal(signal.SIGABRT)
        time.sleep(2)
        raise AssertionError(f"load of {model} hung; threads:\n{service.log()[-20000:]}") from None
    assert loaded.status_code == 200, loaded.text
    unloaded = http.post(f"/api/models/{model}/unload")
    assert unloaded.json()["state"] == "unloaded", unloaded.text


@pytest.mark.parametrize("model", [DIGITS, LLM, EMBEDDER])
def test_fifty_load_unload_cycles_return_memory_near_its_start(
    idle_service: ServiceProcess, model: str
) -> None:
    start = idle_service.resident_bytes()
    admin = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=idle_service.url, headers=admin, timeout=120) as http:
        cycle(idle_service, http, model)
        first = idle_service.resident_bytes()
        for _ in range(CYCLES - 1):
            cycle(idle_service, http, model)
    last = idle_service.resident_bytes()
    FIGURES.append(
        f"cycles: {model}: {CYCLES} load/unload, RSS MiB at start {start / MIB:.1f}, after the "
        f"first cycle {first / MIB:.1f}, after the last {last / MIB:.1f}"
    )
    assert last - first < 32 * MIB, (model, first, last)
