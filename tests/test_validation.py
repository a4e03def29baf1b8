"""Inputs that must be refused with a 400 in the envelope, never a 500: values out of a
datatype's range, absurd shapes, deep nesting, undecodable bytes, NaN written into JSON."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import DIGITS, EMBEDDER, LLM, assert_envelope

INFER = f"/v2/models/{DIGITS}/infer"
DEEP = b"[" * 50_000 + b"]" * 50_000


def tensor(datatype: str, shape: str, data: str) -> bytes:
    return (
        f'{{"inputs":[{{"name":"X","shape":{shape},"datatype":"{datatype}","data":{data}}}]}}'
    ).encode()


@pytest.mark.parametrize(
    ("route", "body"),
    [
        (INFER, tensor("INT64", "[1,64]", str([10**30] * 64))),
        (INFER, tensor("FP16", "[1,64]", str([1e6] * 64))),
        (INFER, tensor("FP32", "[1,64]", str(["a"] * 64))),
        (INFER, tensor("FP32", "[1000000000000,1000000000000]", "[0]")),
        (INFER, tensor("FP32", f"[{2**70}]", "[0]")),
        (INFER, tensor("FP32", "[1,64]", "[" + ",".join(["NaN"] * 64) + "]")),
        (INFER, tensor("FP32", "[1,63]", str([0] * 63))),
        (INFER, tensor("FP32", "[1,64]", "[" * 3000 + "]" * 3000)),
        ("/api/inference", b'{"model_id":"%s","inputs":[[Infinity]]}' % DIGITS.encode()),
        ("/api/inference", b'{"model_id":"%s","inputs":%s}' % (DIGITS.encode(), DEEP)),
        ("/api/inference", b'{"model_id":"%s","inputs":[[%s]]}' % (DIGITS.encode(), b"9" * 500)),
        ("/api/inference", b'{"model_id":"\\ud800","inputs":[[0]]}'),
        ("/api/inference", b"\xff\xfe"),
        ("/api/inference", b""),
        ("/v1/chat/completions", b'{"model":"x","messages":%s}' % DEEP),
        ("/v1/embeddings", b'{"model":"x","input":[[1,2]]}'),
    ],
)
async def test_malformed_input_is_a_400_in_the_envelope(
    client: httpx.AsyncClient, route: str, body: bytes
) -> None:
    response = await client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert_envelope(response, 400, response.json()["error"]["code"])


CHAT = {"model": LLM, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/completions", {"model": LLM, "prompt": "a", "echo": True}, "echo"),
        ("/v1/completions", {"model": LLM, "prompt": "a", "suffix": "z"}, "suffix"),
        ("/v1/completions", {"model": LLM, "prompt": "a", "best_of": 3}, "best_of"),
        ("/v1/embeddings", {"model": EMBEDDER, "input": "a", "dimensions": 8}, "dimensions"),
        # Not taken as 1 and 5: a boolean or a string is no token count.
        ("/v1/chat/completions", {**CHAT, "max_tokens": True}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": "5"}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "seed": "7"}, "seed"),
        # The member of the union pydantic tried is no field of the request.
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": 5}]},
            "messages.0.content",
        ),
        ("/v1/completions", {"model": LLM, "prompt": 5}, "prompt"),
        (
            "/api/inference",
            {"model_id": LLM, "inputs": "hi", "parameters": {"max_tokens": 0}},
            "parameters.max_tokens",
        ),
    ],
)
async def test_a_refused_field_is_named_plainly(
    client: httpx.AsyncClient, route: str, body: dict[str, object], param: str
) -> None:
    # /api/inference checks its free-form parameters itself, after the request's fields.
    code = "invalid_input" if param.startswith("parameters.") else "invalid_request"
    error = assert_envelope(await client.post(route, json=body), 400, code)
    assert error["param"] == param
    assert "Value error" not in error["message"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", b'{"model":"m","messages":[],"keep_alive":NaN}'),
        ("/api/inference", b'{"model_id":"m","inputs":[[0]],"keep_alive":NaN}'),
        ("/api/inference", b'{"model_id":"m","inputs":[[0]],"keep_alive":Infinity}'),
    ],
)
async def test_keep_alive_must_be_a_finite_number(
    client: httpx.AsyncClient, route: str, body: bytes
) -> None:
    response = await client.post(route, content=body, headers={"content-type": "application/json"})
    assert assert_envelope(response, 400, "invalid_request")["param"] == "keep_alive"
