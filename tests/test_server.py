"""The service under a real uvicorn, driven by the official OpenAI client."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import DIGITS, EMBEDDER, LLM
from tests.server import ServiceProcess

pytestmark = [pytest.mark.server, pytest.mark.llm]
ENGLISH = {"the", "a", "and", "to", "of", "is", "in", "your", "you", "for", "it", "are", "be"}
HEALTH_PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Give me three tips for staying healthy."}
]


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    process = ServiceProcess(preload=f"{LLM},{DIGITS}")
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.terminate()
        assert code == 0, process.log()


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0) as api:
        yield api


def english_words(text: str) -> int:
    return sum(word.strip(".,:;!?*").lower() in ENGLISH for word in text.split())


def test_chat_completion_returns_coherent_english(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=LLM,
        messages=HEALTH_PROMPT,
        max_tokens=48,
        temperature=0,
    )
    text = completion.choices[0].message.content or ""
    assert english_words(text) >= 3, text
    assert completion.model == LLM
    assert completion.choices[0].finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


def test_streamed_chat_arrives_in_pieces_and_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=LLM,
        messages=HEALTH_PROMPT,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 5
    assert english_words(text) >= 2, text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 24


def test_streamed_chat_without_include_usage_reports_no_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=LLM,
        messages=HEALTH_PROMPT,
        max_tokens=4,
        stream=True,
    )
    assert all(chunk.usage is None for chunk in stream)


def test_same_seed_gives_the_same_sampled_text(client: openai.OpenAI) -> None:
    def sample() -> str:
        completion = client.chat.completions.create(
            model=LLM,
            messages=HEALTH_PROMPT,
            max_tokens=16,
            temperature=0.9,
            top_p=0.95,
            seed=1234,
        )
        return completion.choices[0].message.content or ""

    assert sample() == sample()


def test_stop_sequence_ends_the_text_before_it(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=LLM,
        messages=HEALTH_PROMPT,
        max_tokens=64,
        temperature=0,
        stop=["2."],
    )
    assert "2." not in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"


def test_ignore_eos_generates_every_token_asked_for(client: openai.OpenAI) -> None:
    # "Say hi." is answered in a few tokens; with ignore_eos the model must go on.
    completion = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=48,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 48
    assert completion.choices[0].finish_reason == "length"


def test_text_completion_continues_the_prompt(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model=LLM, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert "Paris" in completion.choices[0].text
    assert completion.id.startswith("cmpl-")
    # llama.cpp's own fields stay out of the OpenAI answer.
    assert completion.system_fingerprint is None
    assert "timings" not in completion.model_dump()


def test_streamed_text_completion(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=LLM, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices).strip()
    assert all(chunk.id.startswith("cmpl-") for chunk in chunks)
    assert all("timings" not in chunk.model_dump() for chunk in chunks)


def test_embeddings_have_one_vector_per_input(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=EMBEDDER, input=["a cat", "a dog", "tax law"])
    vectors = [item.embedding for item in result.data]
    assert len(vectors) == 3
    assert len({len(vector) for vector in vectors}) == 1
    assert len(vectors[0]) > 100


def test_embeddings_as_floats_match_the_base64_form(service: ServiceProcess) -> None:
    body = {"model": EMBEDDER, "input": "a cat", "encoding_format": "float"}
    response = httpx.post(f"{service.url}/v1/embeddings", json=body, timeout=60)
    floats = response.json()["data"][0]["embedding"]
    packed = httpx.post(
        f"{service.url}/v1/embeddings", json={**body, "encoding_format": "base64"}, timeout=60
    ).json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(packed), dtype="<f4")
    assert decoded.tolist() == pytest.approx(floats, rel=1e-6)


def test_model_list_holds_the_catalogue(client: openai.OpenAI) -> None:
    assert {model.id for model in client.models.list()} >= {LLM, DIGITS, EMBEDDER}


def test_unknown_model_raises_the_clients_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="ghost", messages=HEALTH_PROMPT)
    assert "ghost" in caught.value.message


@pytest.mark.parametrize(
    "change",
    [
        {"messages": []},
        {"model": DIGITS},
        {"temperature": 5},
        {"max_tokens": 0},
        {"n": 3},
        {"messages": [{"role": "wizard", "content": "hi"}]},
    ],
)
def test_bad_chat_request_raises_the_clients_bad_request_error(
    client: openai.OpenAI, change: dict[str, object]
) -> None:
    request: dict[str, object] = {"model": LLM, "messages": HEALTH_PROMPT, **change}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**request)  # type: ignore[call-overload]


def test_prompt_longer_than_the_context_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=LLM,
            messages=[{"role": "user", "content": "word " * 5000}],
            max_tokens=4,
        )
    # In our words: llama.cpp's own advises raising a setting the client does not have.
    message = raised.value.body["message"]  # type: ignore[index]
    pattern = r"the input is \d+ tokens; this model takes at most \d+ per request: .*"
    assert re.fullmatch(pattern, message)
    assert "try increasing" not in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ("tool_choice", "required"),
        ("functions", [{"name": "f", "parameters": {}}]),
        ("response_format", {"type": "json_object"}),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("logit_bias", {"50256": -100}),
        ("stop", [""]),
        ("stop", ""),
    ],
)
def test_what_the_service_cannot_honour_is_refused_not_ignored(
    service: ServiceProcess, field: str, value: object
) -> None:
    body = {"model": LLM, "messages": HEALTH_PROMPT, "max_tokens": 4, field: value}
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == field


def test_the_inert_values_of_unsupported_parameters_are_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=LLM,
        messages=HEALTH_PROMPT,
        max_tokens=4,
        tool_choice="none",
        response_format={"type": "text"},
        logprobs=False,
        logit_bias={},
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}'),
        ("/v1/completions", b'{"model":"m","prompt":"a \\udfff b"}'),
        ("/v1/embeddings", b'{"model":"m","input":"\\ud800"}'),
        ("/api/inference", b'{"model_id":"m","inputs":"\\ud800"}'),
    ],
)
def test_a_lone_surrogate_is_invalid_json_on_every_route(
    service: ServiceProcess, route: str, body: bytes
) -> None:
    response = httpx.post(
        f"{service.url}{route}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("the request body is not valid JSON")
    assert "json.exception" not in error["message"]


def test_embedding_input_longer_than_the_batch_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"this model embeds at most \d+ per text"):
        client.embeddings.create(model=EMBEDDER, input="hello " * 3000)


def test_chat_through_the_alt_las_api(service: ServiceProcess) -> None:
    response = httpx.post(
        f"{service.url}/api/inference",
        json={"model_id": LLM, "inputs": "Name a colour.", "parameters": {"max_tokens": 12}},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"]["text"]


def test_service_listens_on_its_port_only(service: ServiceProcess) -> None:
    assert service.listening_ports() == {service.port}


# 900 tokens: a minute or more of generation, far longer than the tests wait for it.
LONG_ANSWER = {
    "model": LLM,
    "messages": [{"role": "user", "content": "Write a very long story about dragons."}],
    "max_tokens": 900,
    "ignore_eos": True,  # the answer cannot end on its own before the test is done
}


def wait_until_idle(service: ServiceProcess, after: str) -> None:
    """Within 10 s the LLM holds no request in flight, long before 900 tokens could end."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = httpx.get(f"{service.url}/api/models/{LLM}/status").json()
        if status["in_flight"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"generation still running after {after}: {status}")


def test_client_disconnect_stops_the_generation(service: ServiceProcess) -> None:
    request = {**LONG_ANSWER, "stream": True}
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=request, timeout=60) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
    # The generation stops at its next token, and the model stops counting it in flight.
    wait_until_idle(service, "the client left")


def test_client_timeout_on_a_one_shot_chat_stops_the_generation(service: ServiceProcess) -> None:
    request = LONG_ANSWER
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{service.url}/v1/chat/completions", json=request, timeout=2)
    # Without the stop, the model would stay busy for all 900 tokens.
    wait_until_idle(service, "the client timed out")


def test_a_504_stops_the_generation_it_answered_for() -> None:
    process = ServiceProcess(preload=LLM, AIO_REQUEST_TIMEOUT_S="2")
    try:
        process.wait_ready()
        response = httpx.post(f"{process.url}/v1/chat/completions", json=LONG_ANSWER, timeout=30)
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "timeout"
        wait_until_idle(process, "the 504")
    finally:
        process.terminate()


def test_sigterm_lets_the_in_flight_request_finish_and_exits_zero() -> None:
    process = ServiceProcess(preload=LLM)
    process.wait_ready()
    result: dict[str, httpx.Response] = {}

    def slow_request() -> None:
        result["response"] = httpx.post(
            f"{process.url}/v1/chat/completions",
            json={"model": LLM, "messages": HEALTH_PROMPT, "max_tokens": 40, "temperature": 0},
            timeout=120,
        )

    worker = threading.Thread(target=slow_request)
    worker.start()
    for _ in range(200):
        status = httpx.get(f"{process.url}/api/models/{LLM}/status").json()
        if status["in_flight"]:
            break
        time.sleep(0.05)
    code = process.terminate(timeout=120)
    worker.join()
    assert code == 0, process.log()
    log = process.log()
    for line in (
        " ai_orchestrator settings {",
        " ai_orchestrator.lifecycle model loaded backend=llama_cpp seconds=",
        " ai_orchestrator ready",
        " ai_orchestrator draining",
        " ai_orchestrator.lifecycle model unloaded",
        " ai_orchestrator stopped",
    ):
        assert line in log, line
    response = result["response"]
    assert response.status_code == 200, response.text
    assert json.loads(response.text)["usage"]["completion_tokens"] == 40


def test_a_limit_on_the_alt_las_api_names_its_inputs_field(service: ServiceProcess) -> None:
    body = {"model_id": EMBEDDER, "inputs": "hello " * 7000}
    response = httpx.post(f"{service.url}/api/inference", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "AIO_MAX_PROMPT_CHARS" in error["message"]
    assert error["param"] == "inputs"
