"""SIGTERM under load: the service stops accepting, answers every request it had
accepted, and exits 0."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import DIGITS, FIGURES, LLM, MODELS
from tests.server import ServiceProcess

pytestmark = [pytest.mark.server, pytest.mark.llm]
WORKERS = 16
ROW = json.loads((MODELS / "digits-classifier.heldout.json").read_text())["inputs"][0]


@dataclass
class Outcome:
    request_id: str
    status: int | None
    error: str | None
    finished: float


def hammer(url: str, worker: int, stop: threading.Event, outcomes: list[Outcome]) -> None:
    """Send requests, each on a new connection, until the service stops accepting.

    A new connection per request makes every failure unambiguous: either the connection
    was refused (the service had stopped accepting), or an accepted request was dropped.
    """
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=limits, timeout=300) as http:
        number = 0
        while not stop.is_set():
            request_id = f"w{worker}-{number}"
            number += 1
            if number % 8 == 0:
                path = "/v1/chat/completions"
                body: dict[str, object] = {
                    "model": LLM,
                    "messages": [{"role": "user", "content": "Tell me about rivers."}],
                    "max_tokens": 4,
                }
            else:
                path, body = "/api/inference", {"model_id": DIGITS, "inputs": [ROW]}
            try:
                response = http.post(path, json=body, headers={"X-Request-ID": request_id})
            except httpx.HTTPError as exc:
                outcomes.append(Outcome(request_id, None, type(exc).__name__, time.monotonic()))
                if isinstance(exc, httpx.ConnectError):
                    return
                continue
            outcomes.append(Outcome(request_id, response.status_code, None, time.monotonic()))


def test_sigterm_under_load_drops_no_accepted_request_and_exits_zero() -> None:
    # A long grace, since on a busy shared machine a chat may take many seconds: this test
    # is about what happens within the grace, not about its length.
    process = ServiceProcess(preload=f"{LLM},{DIGITS}", AIO_SHUTDOWN_GRACE_S="240")
    process.wait_ready()
    stop = threading.Event()
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(target=hammer, args=(process.url, worker, stop, outcomes))
        for worker in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    while sum(outcome.status == 200 for outcome in outcomes) < 100:
        time.sleep(0.05)
    signalled = time.monotonic()
    code = process.terminate(timeout=300)
    stop.set()
    for thread in threads:
        thread.join(timeout=300)

    log = process.log()
    answered = [outcome for outcome in outcomes if outcome.status is not None]
    refused = [outcome for outcome in outcomes if outcome.error == "ConnectError"]
    # Any other failure must be a request the service never read: not in its request log.
    dropped = [
        outcome
        for outcome in outcomes
        if outcome.error not in (None, "ConnectError") and outcome.request_id in log
    ]
    after = [outcome for outcome in answered if outcome.finished > signalled]
    FIGURES.append(
        f"sigterm under load: {len(answered)} answered ({len(after)} of them after SIGTERM), "
        f"{len(refused)} connections refused once stopping, {len(dropped)} accepted and dropped"
    )
    assert code == 0, log
    assert not dropped, dropped
    assert all(outcome.status == 200 for outcome in answered), answered
    assert after, "no request was in flight when SIGTERM came"
    assert " ai_orchestrator stopped" in log


def test_requests_past_the_grace_end_in_the_envelope_and_the_process_exits_zero() -> None:
    process = ServiceProcess(preload=LLM, AIO_SHUTDOWN_GRACE_S="1")
    process.wait_ready()
    body = {
        "model": LLM,
        "messages": [{"role": "user", "content": "Tell me about rivers."}],
        "max_tokens": 2000,
        "ignore_eos": True,
    }
    plain: list[httpx.Response] = []

    def post() -> None:
        plain.append(httpx.post(f"{process.url}/v1/chat/completions", json=body, timeout=120))

    events: list[str] = []
    streamed = {**body, "stream": True}
    with (
        httpx.Client(base_url=process.url, timeout=120) as http,
        http.stream("POST", "/v1/chat/completions", json=streamed) as stream,
    ):
        lines = stream.iter_lines()
        events.append(next(line for line in lines if line))
        waiting = threading.Thread(target=post)
        waiting.start()
        time.sleep(0.5)
        code = process.terminate(timeout=60)
        events.extend(line for line in lines if line)
    waiting.join(timeout=60)
    log = process.log()
    assert code == 0, log
    # Both ran past the 1 s grace: 2000 tokens take far longer on this CPU.
    (answer,) = plain
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "shutting_down"
    *_, finish, error, done = events
    assert json.loads(finish.removeprefix("data: "))["choices"][0]["finish_reason"] == "error"
    assert json.loads(error.removeprefix("data: "))["error"]["code"] == "shutting_down"
    assert done == "data: [DONE]"
    assert "Exception in ASGI application" not in log
