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


NESTED = b"[" * 956 + b"]" * 956
ROW = "[" + ",".join(["0"] * 64) + "]"


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        # Deeper than the encoder that checks for surrogates goes, shallower than the parser.
        ("/api/inference/batch", b'{"model_id":"m","inputs":[%s]}' % NESTED, "invalid_json"),
        (
            "/v1/chat/completions",
            b'{"model":"m","messages":[],"tools":%s}' % NESTED,
            "invalid_json",
        ),
        (
            INFER,
            tensor("FP32", "[1,64]", "[" + "1" * 400 + "," + ",".join(["0"] * 63) + "]"),
            "invalid_input",
        ),
        (
            INFER,
            b'{"inputs":[{"name":"X","shape":[1,64],"datatype":"FP32","data":%s}],'
            b'"parameters":{"keep_alive":1%s}}' % (ROW.encode(), b"0" * 400),
            "invalid_input",
        ),
        (
            INFER,
            b'{"inputs":[{"name":"X","shape":[1,64],"datatype":"FP32","data":%s}],'
            b'"parameters":{"keep_alive":true}}' % ROW.encode(),
            "invalid_input",
        ),
        (INFER, tensor("FP32", "[true,64]", ROW), "invalid_request"),
        (INFER, tensor("FP32", "[1,64]", str(["1"] * 64).replace("'", '"')), "invalid_input"),
        (INFER, tensor("FP32", "[1,64]", "[" + ",".join(["true"] * 64) + "]"), "invalid_input"),
        (
            "/api/inference",
            b'{"model_id":"m","inputs":[%s],"keep_alive":true}' % ROW.encode(),
            "invalid_request",
        ),
    ],
)
async def test_edge_values_are_a_400_never_a_500(
    client: httpx.AsyncClient, route: str, body: bytes, code: str
) -> None:
    response = await client.post(route, content=body, headers={"content-type": "application/json"})
    assert_envelope(response, 400, code)


async def test_a_batch_item_of_the_wrong_kind_fails_alone(client: httpx.AsyncClient) -> None:
    body = {"model_id": EMBEDDER, "inputs": [5, True, {"a": 1}]}
    response = await client.post("/api/inference/batch", json=body)
    assert response.status_code == 200, response.text
    errors = [result["error"] for result in response.json()["results"]]
    assert [error["code"] for error in errors] == ["invalid_input"] * 3
    assert all("inputs must be a string" in error["message"] for error in errors)


async def test_a_clients_long_strings_are_cut_short_in_messages(client: httpx.AsyncClient) -> None:
    body = {"inputs": [{"name": "X", "shape": [1], "datatype": "Q" * 100_000, "data": [0]}]}
    response = await client.post(INFER, json=body)
    assert len(assert_envelope(response, 400, "invalid_input")["message"]) < 300


async def test_media_types_are_case_insensitive(client: httpx.AsyncClient) -> None:
    body = b'{"model_id":"%s","inputs":[%s]}' % (DIGITS.encode(), ROW.encode())
    response = await client.post(
        "/api/inference", content=body, headers={"content-type": "APPLICATION/JSON; charset=UTF-8"}
    )
    assert response.status_code == 200, response.text


async def test_a_chat_model_is_not_a_tensor_model_for_its_readiness(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"/v2/models/{LLM}/ready")
    assert_envelope(response, 400, "unsupported_task")
