"""Adaptive batching and LLM concurrency, measured in one run.

Prints, for the digits classifier, with batching against without (AIO_BATCH_MAX_SIZE=1):
- requests per second at concurrency 32 through the orchestrator core, in-process (32
  tasks calling Orchestrator.classify): what batching itself changes;
- the same through POST /api/inference over HTTP, where each request's HTTP handling
  (about 0.3 ms of the server's time against 25 us for a one-row forest) bounds the gain;
- p50 latency at concurrency 1 over HTTP.
For the LLM: aggregate decode tokens per second of 4 concurrent chats against 1
(llama.cpp's slots batch them).

Usage: python bench/orchestration.py [--seconds S] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.overhead import (  # noqa: E402
    DIGITS,
    LLM,
    ROW,
    PlainConnection,
    apart,
    percentile,
    run_workers,
    service_digits,
    service_throughput,
)
from tests.server import ServiceProcess  # noqa: E402

from ai_orchestrator.catalogue import load_catalogue  # noqa: E402
from ai_orchestrator.service import Orchestrator  # noqa: E402
from ai_orchestrator.settings import Settings  # noqa: E402

CHAT = {
    "model": LLM,
    "messages": [{"role": "user", "content": "Write a story about a lighthouse keeper."}],
    "max_tokens": 64,
    "temperature": 0,
    "ignore_eos": True,
}


def chats_at_once(port: int, concurrency: int) -> float:
    """Aggregate completion tokens per second of ``concurrency`` simultaneous chats."""
    tokens = [0] * concurrency

    def worker(index: int) -> None:
        connection = PlainConnection(port, timeout=600)
        body = json.dumps(CHAT).encode()
        reply = json.loads(connection.post("/v1/chat/completions", body))
        tokens[index] = reply["usage"]["completion_tokens"]
        connection.close()

    elapsed = run_workers(concurrency, worker)
    return sum(tokens) / elapsed


async def core_throughput(batch_max_size: int, concurrency: int, seconds: float) -> float:
    """One-row classify calls per second from ``concurrency`` tasks on one event loop."""
    settings = Settings(
        env="test",
        catalogue=ROOT / "models/catalogue.yaml",
        model_dir=ROOT / "models",
        batch_max_size=batch_max_size,
    )
    core = Orchestrator(settings, load_catalogue(settings.catalogue, settings.model_dir))
    await core.models.load(DIGITS)
    for _ in range(200):  # warm-up: ONNX Runtime's first calls are slow
        await core.classify(DIGITS, [ROW])
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await core.classify(DIGITS, [ROW])
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await core.models.close()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    batched = ServiceProcess(preload=f"{DIGITS},{LLM}", AIO_LOG_LEVEL="WARNING")
    single = ServiceProcess(preload=DIGITS, AIO_LOG_LEVEL="WARNING", AIO_BATCH_MAX_SIZE="1")
    core: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        core["on"].append(asyncio.run(core_throughput(32, 32, args.seconds)))
        core["off"].append(asyncio.run(core_throughput(1, 32, args.seconds)))
    rps: dict[str, list[float]] = {"on": [], "off": []}
    p50: dict[str, list[float]] = {"on": [], "off": []}
    try:
        batched.wait_ready()
        single.wait_ready()
        for service in (batched, single):
            service_digits(service.port, 200)  # warm-up
        # Alternate the two services so that machine noise hits both alike.
        for _ in range(args.rounds):
            for name, service in (("on", batched), ("off", single)):
                rps[name].append(service_throughput(service.port, 32, args.seconds))
                with apart(service):
                    timings = service_digits(service.port, args.requests)
                p50[name].append(percentile(timings, 50) * 1000)
        single.terminate()
        one = max(chats_at_once(batched.port, 1) for _ in range(2))
        four = max(chats_at_once(batched.port, 4) for _ in range(2))
    finally:
        batched.terminate()
        single.terminate()

    def rounds(values: list[float]) -> str:
        return ", ".join(f"{value:.0f}" for value in values)

    mid = statistics.median
    core_on, core_off = mid(core["on"]), mid(core["off"])
    http_on, http_off = mid(rps["on"]), mid(rps["off"])
    mid_on, mid_off = mid(p50["on"]), mid(p50["off"])
    print(f"medians of {args.rounds} rounds, alternating batching on and off")
    for where, on, off, values in (
        ("core", core_on, core_off, core),
        ("HTTP", http_on, http_off, rps),
    ):
        print(f"digits concurrency 32, {where}, batching on    {on:.0f} requests/s")
        print(f"    rounds: {rounds(values['on'])}")
        print(f"digits concurrency 32, {where}, batching off   {off:.0f} requests/s")
        print(f"    rounds: {rounds(values['off'])}")
        target = "  (target >= 2)" if where == "core" else ""
        print(f"digits {where} throughput ratio on/off         {on / off:.2f}x{target}")
    print(f"digits concurrency 1 p50, on         {mid_on:.3f} ms")
    print(f"digits concurrency 1 p50, off        {mid_off:.3f} ms")
    print(f"digits p50 ratio on/off              {mid_on / mid_off:.3f}x  (target <= 1.1)")
    print(f"LLM 1 chat                           {one:.1f} tokens/s")
    print(f"LLM 4 concurrent chats               {four:.1f} tokens/s aggregate")
    print(f"LLM aggregate ratio 4/1              {four / one:.2f}x")


if __name__ == "__main__":
    main()
