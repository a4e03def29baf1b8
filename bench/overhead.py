"""Service overhead against calling the backends directly, measured in one run.

Prints, for the digits classifier: p50 and p99 latency of one-row requests at
concurrency 1 through POST /api/inference against ONNX Runtime's session.run() called
in-process, and requests per second at concurrency 8. For the LLM: decode tokens per
second through /v1/chat/completions against the binding called directly (2 threads,
128 tokens, greedy).

The digits requests are sent by a lean client (prepared request bytes, responses parsed
by httptools, the parser uvicorn uses), so that the figure is the service's overhead
rather than the client's: http.client spends about 0.17 ms of its own per request here.
The same requests through http.client are printed too. While it measures latency at
concurrency 1, the service runs on one CPU and the client on another (see ``apart``).

Usage: python bench/overhead.py [--requests N] [--llm-runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httptools
import numpy as np
import onnxruntime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import ServiceProcess  # noqa: E402

from ai_orchestrator.backends.llama import LlamaBackend  # noqa: E402
from ai_orchestrator.catalogue import load_catalogue  # noqa: E402
from ai_orchestrator.settings import Settings  # noqa: E402

DIGITS = "digits-classifier"
LLM = "smollm2-135m-instruct"
ROW = json.loads((ROOT / "models" / "digits-classifier.heldout.json").read_text())["inputs"][0]
CHAT = {
    "messages": [{"role": "user", "content": "Write a story about a lighthouse keeper."}],
    "max_tokens": 128,
    "temperature": 0,
    "ignore_eos": True,
}


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def direct_digits(settings: Settings, count: int) -> list[float]:
    """ONNX Runtime alone, with the thread counts the service gives it."""
    catalogue = load_catalogue(settings.catalogue, settings.model_dir)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings.onnx_intra_op_threads
    options.inter_op_num_threads = settings.onnx_inter_op_threads
    session = onnxruntime.InferenceSession(
        str(catalogue.file_of(catalogue.get(DIGITS))), options, ["CPUExecutionProvider"]
    )
    feeds = {session.get_inputs()[0].name: np.asarray([ROW], dtype=np.float32)}
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - started)
    return timings


class LeanConnection:
    """One keep-alive connection that sends prepared bytes and parses with httptools."""

    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._body: list[bytes] = []
        self._complete = False

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete = True

    def post(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._socket.sendall(head.encode() + body)
        parser = httptools.HttpResponseParser(self)
        self._body, self._complete = [], False
        while not self._complete:
            data = self._socket.recv(65536)
            if not data:
                raise RuntimeError(f"{path}: the connection closed")
            parser.feed_data(data)
        reply = b"".join(self._body)
        if parser.get_status_code() != 200:
            raise RuntimeError(f"{path}: {parser.get_status_code()} {reply[:200]!r}")
        return reply

    def close(self) -> None:
        self._socket.close()


class PlainConnection:
    """The same calls as LeanConnection, through Python's http.client."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, path: str, body: bytes) -> bytes:
        self._connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = self._connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
        return data

    def close(self) -> None:
        self._connection.close()


def _set_cpus(pid: int, cpus: set[int]) -> None:
    """Move every thread of process ``pid`` to ``cpus``."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread may end meanwhile
            os.sched_setaffinity(int(task), cpus)


@contextlib.contextmanager
def apart(service: ServiceProcess) -> Iterator[None]:
    """Run the service on one CPU and this client on another, for latency at concurrency 1.

    On two cores, whether the client and the service happen to share a core moves the
    p50 by about 0.1 ms for the life of a process, which would swamp the comparisons.
    Without two CPUs to spare, nothing is pinned.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield
        return
    _set_cpus(service.process.pid, {cpus[-1]})
    _set_cpus(os.getpid(), {cpus[0]})
    try:
        yield
    finally:
        _set_cpus(service.process.pid, set(cpus))
        _set_cpus(os.getpid(), set(cpus))


def service_digits(port: int, count: int, lean: bool = True) -> list[float]:
    body = json.dumps({"model_id": DIGITS, "inputs": [ROW]}).encode()
    timings = []
    connection = LeanConnection(port) if lean else PlainConnection(port)
    for _ in range(count):
        started = time.perf_counter()
        connection.post("/api/inference", body)
        timings.append(time.perf_counter() - started)
    connection.close()
    return timings


def run_workers(count: int, worker: Callable[[int], None]) -> float:
    """Run ``worker(0..count-1)`` on threads at once; the seconds until all have finished.
    Call it before reading what the workers counted."""
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def service_throughput(port: int, concurrency: int, seconds: float) -> float:
    body = json.dumps({"model_id": DIGITS, "inputs": [ROW]}).encode()
    done = [0] * concurrency
    stop = time.perf_counter() + seconds

    def worker(index: int) -> None:
        connection = LeanConnection(port)
        while time.perf_counter() < stop:
            connection.post("/api/inference", body)
            done[index] += 1
        connection.close()

    elapsed = run_workers(concurrency, worker)
    return sum(done) / elapsed


def direct_llm(settings: Settings, runs: int) -> list[float]:
    catalogue = load_catalogue(settings.catalogue, settings.model_dir)
    entry = catalogue.get(LLM)
    handle = LlamaBackend(settings).load(entry, catalogue.file_of(entry))
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        usage = handle.chat(dict(CHAT)).response["usage"]
        rates.append(usage["completion_tokens"] / (time.perf_counter() - started))
    handle.unload()
    return rates


def service_llm(port: int, runs: int) -> list[float]:
    connection = PlainConnection(port, timeout=300)
    body = json.dumps({"model": LLM, **CHAT}).encode()
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        usage = json.loads(connection.post("/v1/chat/completions", body))["usage"]
        rates.append(usage["completion_tokens"] / (time.perf_counter() - started))
    connection.close()
    return rates


def median_p(rounds: list[list[float]], q: float) -> float:
    """The median over rounds of each round's q-th percentile, in milliseconds."""
    return statistics.median(percentile(timings, q) for timings in rounds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llm-runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(
        env="test", catalogue=ROOT / "models/catalogue.yaml", model_dir=ROOT / "models"
    )

    # WARNING leaves out the one INFO line each request logs; INFO is the default level
    # outside development, so its cost is measured too.
    service = ServiceProcess(preload=f"{LLM},{DIGITS}", AIO_LOG_LEVEL="WARNING")
    logging = ServiceProcess(preload=DIGITS, AIO_LOG_LEVEL="INFO")
    direct: list[list[float]] = []
    served: list[list[float]] = []
    logged: list[list[float]] = []
    plain: list[list[float]] = []
    try:
        for each in (service, logging):
            each.wait_ready()
            service_digits(each.port, 200)  # warm-up
        # Rounds alternate the measurements, so that machine noise hits them alike.
        for _ in range(args.rounds):
            direct.append(direct_digits(settings, args.requests))
            with apart(service):
                served.append(service_digits(service.port, args.requests))
                plain.append(service_digits(service.port, args.requests, lean=False))
            with apart(logging):
                logged.append(service_digits(logging.port, args.requests))
        logging.terminate()
        rps = service_throughput(service.port, concurrency=8, seconds=5)
        llm_direct: list[float] = []
        llm_served: list[float] = []
        for _ in range(args.llm_runs):
            llm_direct += direct_llm(settings, 1)
            llm_served += service_llm(service.port, 1)
    finally:
        service.terminate()
        logging.terminate()

    d50, d99 = median_p(direct, 50), median_p(direct, 99)
    s50, s99 = median_p(served, 50), median_p(served, 99)
    l50, l99 = median_p(logged, 50), median_p(logged, 99)
    print(f"digits, median of {args.rounds} rounds of {args.requests} requests each:")
    print(f"digits direct session.run      p50 {d50:.3f} ms   p99 {d99:.3f} ms")
    print(f"digits POST /api/inference     p50 {s50:.3f} ms   p99 {s99:.3f} ms")
    print(f"digits overhead                p50 {s50 - d50:.3f} ms   p99 {s99 - d99:.3f} ms")
    print(f"digits overhead, INFO logging  p50 {l50 - d50:.3f} ms   p99 {l99 - d99:.3f} ms")
    print(f"digits through http.client     p50 {median_p(plain, 50):.3f} ms   (its parsing too)")
    print(f"digits throughput, concurrency 8: {rps:.0f} requests/s")
    if not llm_direct:
        return
    direct_rate, served_rate = statistics.median(llm_direct), statistics.median(llm_served)
    print(f"LLM decode direct binding      {direct_rate:.1f} tokens/s (runs {llm_direct})")
    print(f"LLM decode /v1/chat/completions {served_rate:.1f} tokens/s")
    print(f"LLM API / direct ratio         {served_rate / direct_rate:.3f}")


if __name__ == "__main__":
    main()
