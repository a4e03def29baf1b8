"""The service under load on loopback, in production mode with keys: a mix of valid and
invalid requests gets no 5xx and every response, and resident memory stops growing.
The official OpenAI client sees its own errors for a wrong key and a wrong scope."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, DIGITS, FIGURES, INFERENCE_KEY, LLM, MODELS, write_key_file
from tests.server import ServiceProcess

pytestmark = [pytest.mark.server, pytest.mark.llm]
MIB = 1024 * 1024
REQUESTS = 5000
ROUNDS = 5
CONCURRENCY = 32
ROW = json.loads((MODELS / "digits-classifier.heldout.json").read_text())["inputs"][0]
INFERENCE = {"Authorization": f"Bearer {INFERENCE_KEY}"}
CHAT = {"model": LLM, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    keys = write_key_file(tmp_path_factory.mktemp("keys") / "keys")
    process = ServiceProcess(
        preload=f"{LLM},{DIGITS}",
        AIO_ENV="production",
        AIO_API_KEYS_FILE=str(keys),
        # The load comes from one key; the limit is tested in-process.
        AIO_RATE_LIMIT_PER_S="1000000",
        AIO_LOG_LEVEL="WARNING",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        assert process.terminate() == 0, process.log()


def test_openai_client_raises_its_authentication_error_for_a_wrong_key(
    service: ServiceProcess,
) -> None:
    with (
        openai.OpenAI(base_url=f"{service.url}/v1", api_key="x" * 20, max_retries=0) as api,
        pytest.raises(openai.AuthenticationError),
    ):
        api.models.list()


def test_openai_client_raises_its_permission_error_for_a_wrong_scope(
    service: ServiceProcess,
) -> None:
    with (
        openai.OpenAI(base_url=service.url, api_key=INFERENCE_KEY, max_retries=0) as api,
        pytest.raises(openai.PermissionDeniedError),
    ):
        api.post(f"/api/models/{DIGITS}/unload", cast_to=object)


def test_openai_client_chats_with_an_inference_key(service: ServiceProcess) -> None:
    with openai.OpenAI(base_url=f"{service.url}/v1", api_key=INFERENCE_KEY, max_retries=0) as api:
        completion = api.chat.completions.create(
            model=LLM, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


def mixed_request(index: int) -> dict[str, Any]:
    """Request number ``index`` of the load: half valid classifications, the rest other
    routes and inputs that must be refused with a 4xx."""
    digits = {"model_id": DIGITS, "inputs": [ROW]}
    oip = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}
    kinds: list[dict[str, Any]] = [
        {"url": "/api/inference", "json": digits},
        {"url": "/api/inference", "content": b'{"model_id": "' + DIGITS.encode() + b'", "inp'},
        {
            "url": "/api/inference",
            "content": b'{"model_id":"%s","inputs":[[NaN]]}' % DIGITS.encode(),
        },
        {"url": "/api/inference", "json": {"model_id": DIGITS, "inputs": [ROW[:63]]}},
        {"url": "/api/inference", "json": {"model_id": "ghost", "inputs": [ROW]}},
        {
            "url": "/api/inference",
            "json": digits,
            "headers": {"Authorization": "Bearer " + "y" * 20},
        },
        {"url": f"/v2/models/{DIGITS}/infer", "json": oip},
        {"url": "/v1/models", "method": "GET"},
        {"url": f"/api/models/{DIGITS}/load"},
        {"url": "/v1/chat/completions", "json": {**CHAT, "messages": []}},
    ]
    if index % 20 == 19:
        return {"url": "/v1/chat/completions", "json": CHAT}
    if index % 2 == 0:
        return kinds[0]
    return kinds[(index // 2) % len(kinds)]


async def send_round(http: httpx.AsyncClient, start: int, count: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(start, start + count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            spec = mixed_request(queue.get_nowait())
            headers = {**INFERENCE, **spec.get("headers", {})}
            response = await http.request(
                spec.get("method", "POST"),
                spec["url"],
                json=spec.get("json"),
                content=spec.get("content"),
                headers=headers,
            )
            statuses[response.status_code] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def test_mixed_load_gets_no_5xx_and_memory_stops_growing(service: ServiceProcess) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    statuses: Counter[int] = Counter()
    resident = [service.resident_bytes()]
    per_round = REQUESTS // ROUNDS
    async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=120) as http:
        for number in range(ROUNDS):
            statuses += await send_round(http, number * per_round, per_round)
            resident.append(service.resident_bytes())
        scrape = await http.get("/metrics", headers={"X-API-Key": ADMIN_KEY})
    received = sum(statuses.values())
    errors = sum(count for status, count in statuses.items() if status >= 400)
    figures = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    rounds = " -> ".join(f"{value / MIB:.1f}" for value in resident)
    FIGURES.append(
        f"load: {received} requests at concurrency {CONCURRENCY}, {errors} refused with 4xx, "
        f"0 with 5xx ({figures})"
    )
    FIGURES.append(f"load: service RSS MiB before, then after each {per_round}: {rounds}")
    assert received == REQUESTS
    assert all(status < 500 for status in statuses), statuses
    assert {200, 400, 401, 403, 404} <= set(statuses)
    # The first round warms caches and allocator pools; after it, memory must level off.
    assert resident[-1] - resident[1] < 24 * MIB, rounds
    assert "aio_tokens_generated_total" in scrape.text
