"""Service overhead against calling the backends directly, measured in one run.

Prints, for the digits classifier: p50 and p99 latency of one-row requests at
concurrency 1 through POST /api/inference against session.run() in-process, and
requests per second at concurrency 8. For the LLM: decode tokens per second through
/v1/chat/completions against the binding called directly (2 threads, 128 tokens, greedy).

Usage: python bench/overhead.py [--requests N] [--llm-runs N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import ServiceProcess  # noqa: E402

from ai_orchestrator.backends.llama import LlamaBackend  # noqa: E402
from ai_orchestrator.backends.onnx import OnnxBackend  # noqa: E402
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
    catalogue = load_catalogue(settings.catalogue, settings.model_dir)
    entry = catalogue.get(DIGITS)
    handle = OnnxBackend(settings).load(entry, catalogue.file_of(entry))
    row = np.asarray([ROW], dtype=np.float32)
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        handle.classify(row)
        timings.append(time.perf_counter() - started)
    handle.unload()
    return timings


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
    return data


def service_digits(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"model_id": DIGITS, "inputs": [ROW]}).encode()
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        post(connection, "/api/inference", body)
        timings.append(time.perf_counter() - started)
    connection.close()
    return timings


def run_workers(count: int, worker: Callable[[int], None]) -> float:
    """Run ``worker(0..count-1)`` on threads at once; the seconds until all have finished."""
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
        connection = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < stop:
            post(connection, "/api/inference", body)
            done[index] += 1
        connection.close()

    return sum(done) / run_workers(concurrency, worker)


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
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = json.dumps({"model": LLM, **CHAT}).encode()
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        usage = json.loads(post(connection, "/v1/chat/completions", body))["usage"]
        rates.append(usage["completion_tokens"] / (time.perf_counter() - started))
    connection.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--llm-runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(
        env="test", catalogue=ROOT / "models/catalogue.yaml", model_dir=ROOT / "models"
    )

    service = ServiceProcess(preload=f"{LLM},{DIGITS}", AIO_LOG_LEVEL="WARNING")
    service.wait_ready()
    try:
        service_digits(service.port, 200)  # warm-up
        direct = direct_digits(settings, args.requests)
        served = service_digits(service.port, args.requests)
        rps = service_throughput(service.port, concurrency=8, seconds=5)
        # Alternate the two LLM measurements so that machine noise hits both alike.
        llm_direct: list[float] = []
        llm_served: list[float] = []
        for _ in range(args.llm_runs):
            llm_direct += direct_llm(settings, 1)
            llm_served += service_llm(service.port, 1)
    finally:
        service.terminate()

    ms = 1000.0
    d50, d99 = percentile(direct, 50) * ms, percentile(direct, 99) * ms
    s50, s99 = percentile(served, 50) * ms, percentile(served, 99) * ms
    print(f"digits direct session.run      p50 {d50:.3f} ms   p99 {d99:.3f} ms")
    print(f"digits POST /api/inference     p50 {s50:.3f} ms   p99 {s99:.3f} ms")
    print(f"digits overhead                p50 {s50 - d50:.3f} ms   p99 {s99 - d99:.3f} ms")
    print(f"digits throughput, concurrency 8: {rps:.0f} requests/s")
    direct_rate, served_rate = statistics.median(llm_direct), statistics.median(llm_served)
    print(f"LLM decode direct binding      {direct_rate:.1f} tokens/s (runs {llm_direct})")
    print(f"LLM decode /v1/chat/completions {served_rate:.1f} tokens/s")
    print(f"LLM API / direct ratio         {served_rate / direct_rate:.3f}")


if __name__ == "__main__":
    main()
