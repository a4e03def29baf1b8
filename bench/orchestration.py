"""Adaptive batching and LLM concurrency, measured in one run.

Prints, for the digits classifier through POST /api/inference: requests per second at
concurrency 32 with batching against without (AIO_BATCH_MAX_SIZE=1), and p50 latency at
concurrency 1 with against without. For the LLM: aggregate decode tokens per second of 4
concurrent chats against 1 (llama.cpp's slots batch them).

Usage: python bench/orchestration.py [--seconds S] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.overhead import (  # noqa: E402
    DIGITS,
    LLM,
    percentile,
    post,
    run_workers,
    service_digits,
    service_throughput,
)
from tests.server import ServiceProcess  # noqa: E402

CHAT = {
    "model": LLM,
    "messages": [{"role": "user", "content": "Write a story about a lighthouse keeper."}],
    "max_tokens": 64,
    "temperature": 0,
    "ignore_eos": True,
}


def chats_at_once(port: int, concurrency: int) -> float:
    """Aggregate completion tokens per second of ``concurrency`` simultaneous chats."""
    import http.client

    tokens = [0] * concurrency

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        body = json.dumps(CHAT).encode()
        reply = json.loads(post(connection, "/v1/chat/completions", body))
        tokens[index] = reply["usage"]["completion_tokens"]
        connection.close()

    elapsed = run_workers(concurrency, worker)
    return sum(tokens) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    batched = ServiceProcess(preload=f"{DIGITS},{LLM}", AIO_LOG_LEVEL="WARNING")
    single = ServiceProcess(preload=DIGITS, AIO_LOG_LEVEL="WARNING", AIO_BATCH_MAX_SIZE="1")
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
                timings = service_digits(service.port, args.requests)
                p50[name].append(percentile(timings, 50) * 1000)
        single.terminate()
        one = max(chats_at_once(batched.port, 1) for _ in range(2))
        four = max(chats_at_once(batched.port, 4) for _ in range(2))
    finally:
        batched.terminate()
        single.terminate()

    best_on, best_off = max(rps["on"]), max(rps["off"])
    mid_on, mid_off = (
        sorted(p50["on"])[len(p50["on"]) // 2],
        sorted(p50["off"])[len(p50["off"]) // 2],
    )
    print(f"digits concurrency 32, batching on   {best_on:.0f} requests/s  (rounds {rps['on']})")
    print(f"digits concurrency 32, batching off  {best_off:.0f} requests/s  (rounds {rps['off']})")
    print(f"digits throughput ratio on/off       {best_on / best_off:.2f}x  (target >= 2)")
    print(f"digits concurrency 1 p50, on         {mid_on:.3f} ms")
    print(f"digits concurrency 1 p50, off        {mid_off:.3f} ms")
    print(f"digits p50 ratio on/off              {mid_on / mid_off:.3f}x  (target <= 1.1)")
    print(f"LLM 1 chat                           {one:.1f} tokens/s")
    print(f"LLM 4 concurrent chats               {four:.1f} tokens/s aggregate")
    print(f"LLM aggregate ratio 4/1              {four / one:.2f}x")


if __name__ == "__main__":
    main()
