"""The ALT_LAS API on the digits classifier: catalogue, lifecycle routes, inference and
every kind of bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ai_orchestrator.api.app import create_app
from ai_orchestrator.settings import Settings
from tests.conftest import DIGITS, EMBEDDER, LLM, MODELS, assert_envelope

HELDOUT = json.loads((MODELS / "digits-classifier.heldout.json").read_text())
RECORD = json.loads((MODELS / "digits-classifier.accuracy.json").read_text())


async def infer(client: httpx.AsyncClient, inputs: Any, model: str = DIGITS) -> httpx.Response:
    return await client.post("/api/inference", json={"model_id": model, "inputs": inputs})


async def test_models_lists_the_catalogue_with_states(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/models")).json()
    states = {model["id"]: model["status"]["state"] for model in body["models"]}
    assert states == {LLM: "unloaded", EMBEDDER: "unloaded", DIGITS: "unloaded"}


async def test_model_detail_and_status(client: httpx.AsyncClient) -> None:
    detail = (await client.get(f"/api/models/{DIGITS}")).json()
    assert detail["task"] == "classification"
    assert detail["backend"] == "onnxruntime"
    assert len(detail["sha256"]) == 64
    status = (await client.get(f"/api/models/{DIGITS}/status")).json()
    assert status["state"] == "unloaded"


async def test_load_and_unload_routes_change_the_state(client: httpx.AsyncClient) -> None:
    loaded = await client.post(f"/api/models/{DIGITS}/load")
    assert loaded.status_code == 200
    assert loaded.json()["state"] == "ready"
    assert loaded.json()["memory_bytes"] is not None
    unloaded = await client.post(f"/api/models/{DIGITS}/unload")
    assert unloaded.json()["state"] == "unloaded"


@pytest.mark.parametrize(
    "route",
    [
        "/api/models/ghost",
        "/api/models/ghost/status",
    ],
)
async def test_unknown_model_is_404_in_the_envelope(client: httpx.AsyncClient, route: str) -> None:
    assert_envelope(await client.get(route), 404, "model_not_found")


@pytest.mark.parametrize("action", ["load", "unload"])
async def test_lifecycle_of_unknown_model_is_404(client: httpx.AsyncClient, action: str) -> None:
    assert_envelope(await client.post(f"/api/models/ghost/{action}"), 404, "model_not_found")


async def test_classifier_accuracy_through_the_api_equals_the_recorded_accuracy(
    client: httpx.AsyncClient,
) -> None:
    response = await infer(client, HELDOUT["inputs"])
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    correct = sum(p == t for p, t in zip(outputs["labels"], HELDOUT["labels"], strict=True))
    assert correct / len(HELDOUT["labels"]) == RECORD["heldout_accuracy"]
    assert RECORD["heldout_accuracy"] > 0.95
    for row in outputs["probabilities"]:
        assert len(row) == 10
        assert sum(row) == pytest.approx(1, abs=1e-4)


async def test_classification_loads_the_model_on_demand(client: httpx.AsyncClient) -> None:
    assert (await infer(client, HELDOUT["inputs"][:1])).status_code == 200
    status = (await client.get(f"/api/models/{DIGITS}/status")).json()
    assert status["state"] == "ready"


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([[1] * 63], "shape"),
        ([[1] * 65], "shape"),
        ([[1] * 64, [1] * 63], "equal length"),
        ([["a"] * 64], "numbers"),
        ([[None] * 64], "numbers"),
        ([], "non-empty"),
        ("a prompt", "rows"),
        ([1, 2, 3], "rows"),
        ([[[1] * 64]], "rows"),
    ],
)
async def test_bad_classifier_input_is_a_400_naming_the_problem(
    client: httpx.AsyncClient, inputs: Any, fragment: str
) -> None:
    error = assert_envelope(await infer(client, inputs), 400, "invalid_input")
    assert fragment in error["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_number_in_a_raw_body_is_refused(
    client: httpx.AsyncClient, value: str
) -> None:
    body = '{"model_id": "digits-classifier", "inputs": [[' + value + ", 0" * 63 + "]]}"
    response = await client.post(
        "/api/inference", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_json", "invalid_input"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "invalid_json"),
        ('{"inputs": [[1]]}', "invalid_request"),
        ('{"model_id": "digits-classifier"}', "invalid_request"),
        ('{"model_id": 7, "inputs": [[1]]}', "invalid_request"),
        ('{"model_id": "digits-classifier", "inputs": 5}', "invalid_request"),
        ('{"model_id": "digits-classifier", "inputs": [], "extra": 1}', "invalid_request"),
        ("[]", "invalid_request"),
        ("", "invalid_json"),
    ],
)
async def test_malformed_body_is_a_400_in_the_envelope(
    client: httpx.AsyncClient, body: str, code: str
) -> None:
    response = await client.post(
        "/api/inference", content=body, headers={"content-type": "application/json"}
    )
    assert_envelope(response, 400, code)


async def test_inference_on_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    assert_envelope(await infer(client, [[0] * 64], model="ghost"), 404, "model_not_found")


async def test_body_over_the_limit_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    app = create_app(small)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await infer(http, [[0] * 64] * 100)
    assert_envelope(response, 413, "body_too_large")


def test_the_direct_inference_route_is_in_the_openapi_document(settings: Settings) -> None:
    operation = create_app(settings).openapi()["paths"]["/api/inference"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"model_id", "inputs"}


async def test_unknown_route_and_wrong_method_use_the_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/nothing"), 404, "not_found")
    assert_envelope(await client.get("/api/inference"), 405, "method_not_allowed")


async def test_corrupt_model_fails_its_load_while_the_other_keeps_serving(
    client: httpx.AsyncClient, model_dir: Path
) -> None:
    gguf = model_dir / "smollm2-135m-instruct.Q4_1.gguf"
    gguf.unlink()
    gguf.write_bytes(b"GGUF but not really")
    error = assert_envelope(await client.post(f"/api/models/{LLM}/load"), 503, "model_load_failed")
    assert "sha256" in error["message"]
    status = (await client.get(f"/api/models/{LLM}/status")).json()
    assert status["state"] == "failed"
    assert (await infer(client, HELDOUT["inputs"][:3])).status_code == 200


async def test_request_id_from_the_client_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/models/ghost", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["error"]["request_id"] == "abc-123"


async def test_chunked_body_over_the_limit_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    app = create_app(small)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model_id": "digits-classifier", "inputs": [['
        for _ in range(500):
            yield b"0, " * 10

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(
            "/api/inference", content=chunks(), headers={"content-type": "application/json"}
        )
    assert_envelope(response, 413, "body_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_body_that_is_not_json_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/api/inference", content=b"model_id=x", headers={"content-type": content_type}
    )
    error = assert_envelope(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]


async def test_body_that_is_not_utf8_is_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/inference", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    assert_envelope(response, 400, "invalid_json")


async def test_value_beyond_float32_is_refused(client: httpx.AsyncClient) -> None:
    error = assert_envelope(await infer(client, [[1e39] * 64]), 400, "invalid_input")
    assert "float32" in error["message"]


async def test_very_long_unknown_id_is_not_echoed_whole(client: httpx.AsyncClient) -> None:
    error = assert_envelope(await client.get(f"/api/models/{'x' * 5000}"), 404, "model_not_found")
    assert len(error["message"]) < 300


@pytest.mark.parametrize(
    "parameters",
    [{"max_tokens": 2**32 + 6}, {"seed": 2**64}, {"seed": -5}, {"temperature": "hot"}],
)
async def test_out_of_range_generation_parameters_are_refused(
    client: httpx.AsyncClient, parameters: dict[str, Any]
) -> None:
    body = {"model_id": LLM, "inputs": "hi", "parameters": parameters}
    response = await client.post("/api/inference", json=body)
    assert_envelope(response, 400, "invalid_input")


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [{"role": "user", "content": "hi", "tool_calls": "junk"}],
        [{"role": "wizard", "content": "hi"}],
        [{"role": "user"}],
    ],
)
async def test_chat_messages_beyond_plain_text_are_refused(
    client: httpx.AsyncClient, messages: list[dict[str, Any]]
) -> None:
    response = await client.post("/api/inference", json={"model_id": LLM, "inputs": messages})
    assert_envelope(response, 400, "invalid_input")
