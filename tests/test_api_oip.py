"""Open Inference Protocol (v2) routes on the digits classifier."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import DIGITS, LLM, assert_envelope
from tests.test_api_models import HELDOUT


def tensor(rows: list[list[int]], **change: Any) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    return {"name": "X", "shape": [len(rows), 64], "datatype": "FP32", "data": flat, **change}


async def test_server_metadata_and_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2")).json()["name"]
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}


async def test_model_metadata_describes_the_tensors(client: httpx.AsyncClient) -> None:
    metadata = (await client.get(f"/v2/models/{DIGITS}")).json()
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert [output["name"] for output in metadata["outputs"]] == ["label", "probabilities"]


async def test_model_ready_follows_the_lifecycle(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get(f"/v2/models/{DIGITS}/ready"), 503, "model_not_ready")
    await client.post(f"/api/models/{DIGITS}/load")
    assert (await client.get(f"/v2/models/{DIGITS}/ready")).json()["ready"] is True


async def test_infer_returns_labels_matching_the_alt_las_api(client: httpx.AsyncClient) -> None:
    rows = HELDOUT["inputs"][:5]
    body = {"id": "req-1", "inputs": [tensor(rows)]}
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["id"] == "req-1"
    outputs = {output["name"]: output for output in result["outputs"]}
    assert outputs["label"]["shape"] == [5]
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [5, 10]
    alt_las = await client.post("/api/inference", json={"model_id": DIGITS, "inputs": rows})
    assert outputs["label"]["data"] == alt_las.json()["outputs"]["labels"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"shape": [1, 63]}, "does not fit"),
        ({"shape": [1, 32], "data": [0] * 32}, "shape"),
        ({"datatype": "STRING"}, "datatype"),
        ({"data": ["x"] * 64}, "does not fit"),
        ({"name": "Y"}, "missing input"),
        ({"shape": [-1, 64]}, "negative"),
        ({"data": [float("inf")] + [0] * 63}, "NaN"),
        ({"data": [None] * 64}, "null"),
        ({"datatype": "UINT8", "data": [300] * 64}, "do not fit"),
        ({"datatype": "UINT8", "data": [-1] * 64}, "do not fit"),
        ({"datatype": "INT64", "data": [2**70] * 64}, "do not fit"),
        ({"datatype": "INT32", "data": [1.5] * 64}, "do not fit"),
        # The values fit, but the model's X is FP32: never converted behind the caller.
        ({"datatype": "INT64"}, "is FP32 in the model, not INT64"),
        ({"datatype": "FP64"}, "is FP32 in the model, not FP64"),
        ({"datatype": "BOOL", "data": [True] * 64}, "is FP32 in the model, not BOOL"),
    ],
)
async def test_bad_tensor_is_a_400(
    client: httpx.AsyncClient, change: dict[str, Any], fragment: str
) -> None:
    body = {"inputs": [tensor(HELDOUT["inputs"][:1], **change)]}
    response = await client.post(
        f"/v2/models/{DIGITS}/infer",
        content=json.dumps(body, allow_nan=True),
        headers={"content-type": "application/json"},
    )
    error = assert_envelope(response, 400, "invalid_input")
    assert fragment in error["message"]


async def test_infer_on_a_chat_model_is_refused(client: httpx.AsyncClient) -> None:
    body = {"inputs": [tensor(HELDOUT["inputs"][:1])]}
    assert_envelope(
        await client.post(f"/v2/models/{LLM}/infer", json=body), 400, "unsupported_task"
    )


async def test_unknown_and_repeated_tensor_names_are_refused(client: httpx.AsyncClient) -> None:
    row = HELDOUT["inputs"][:1]
    repeated = {"inputs": [tensor(row), tensor(row)]}
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=repeated)
    assert "only once" in assert_envelope(response, 400, "invalid_input")["message"]
    extra = {"inputs": [tensor(row), tensor(row, name="Z")]}
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=extra)
    assert "unknown input" in assert_envelope(response, 400, "invalid_input")["message"]


async def test_infer_without_inputs_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/v2/models/{DIGITS}/infer", json={"inputs": []})
    assert_envelope(response, 400, "invalid_request")


async def test_infer_returns_only_the_requested_outputs(client: httpx.AsyncClient) -> None:
    body = {"inputs": [tensor(HELDOUT["inputs"][:2])], "outputs": [{"name": "label"}]}
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=body)
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()["outputs"]] == ["label"]
    body["outputs"] = [{"name": "probabilities"}, {"name": "label"}]
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=body)
    assert [output["name"] for output in response.json()["outputs"]] == ["probabilities", "label"]


async def test_infer_refuses_an_output_the_model_does_not_have(client: httpx.AsyncClient) -> None:
    body = {"inputs": [tensor(HELDOUT["inputs"][:1])], "outputs": [{"name": "nope"}]}
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=body)
    error = assert_envelope(response, 400, "invalid_input")
    assert "'nope'" in error["message"]
    assert "'label'" in error["message"]
    assert error["param"] == "outputs"


@pytest.mark.parametrize(
    "change",
    [
        {"outputs": [{"name": "label", "parameters": {"binary_data": True}}]},
        {"parameters": {"binary_data_output": True}},
    ],
)
async def test_binary_tensor_data_is_refused_not_answered_in_json(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    body = {"inputs": [tensor(HELDOUT["inputs"][:1])], **change}
    response = await client.post(f"/v2/models/{DIGITS}/infer", json=body)
    assert "binary" in assert_envelope(response, 400, "invalid_input")["message"]
