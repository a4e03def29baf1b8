from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ai_orchestrator.api.app import create_app
from ai_orchestrator.logs import JsonFormatter, configure_logging
from ai_orchestrator.settings import Environment, Settings
from tests.conftest import DIGITS, INFERENCE_KEY, MODELS


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    names = ("ai_orchestrator", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in names
    }
    yield
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).propagate = propagate


@pytest.mark.usefixtures("restore_loggers")
async def test_production_logs_one_json_line_per_request_with_ids(
    settings: Settings, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    production = settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "log_json": True,
            "log_level": "INFO",
            "api_keys_file": key_file,
        }
    )
    configure_logging(production)
    app = create_app(production)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(
            "/api/inference",
            json={"model_id": DIGITS, "inputs": [[0] * 64]},
            headers={"Authorization": f"Bearer {INFERENCE_KEY}"},
        )
    assert response.status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (request_line,) = [line for line in lines if line.get("event") == "request"]
    assert request_line["request_id"] == response.headers["x-request-id"]
    assert request_line["model_id"] == DIGITS
    assert request_line["route"] == "/api/inference"
    assert request_line["status"] == 200
    assert request_line["latency_ms"] > 0
    assert len(request_line["key_id"]) == 12
    loaded = [line for line in lines if line.get("event") == "model_loaded"]
    assert loaded[0]["backend"] == "onnxruntime"


@pytest.mark.usefixtures("restore_loggers")
async def test_keys_never_appear_in_the_logs(
    settings: Settings, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    debug = settings.model_copy(
        update={"env": Environment.STAGING, "log_level": "DEBUG", "api_keys_file": key_file}
    )
    configure_logging(debug)
    app = create_app(debug)
    wrong = "wrong-0123456789abcdef0123456789"
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        for key in (INFERENCE_KEY, wrong):
            await http.get("/api/models", headers={"X-API-Key": key})
            await http.post("/api/models/x/load", headers={"Authorization": f"Bearer {key}"})
    err = capsys.readouterr().err
    assert "request" in err
    assert INFERENCE_KEY not in err
    assert wrong not in err


@pytest.mark.usefixtures("restore_loggers")
async def test_newline_in_a_path_cannot_forge_a_text_log_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.get("/api/models/x%0A2026-12-03 ERROR forged%00")
    lines = capsys.readouterr().err.splitlines()
    assert not any(line.startswith("2026-12-03 ERROR forged") for line in lines)
    assert any("\\n2026-12-03 ERROR forged\\x00" in line for line in lines)


@pytest.mark.usefixtures("restore_loggers")
async def test_passing_health_probes_log_at_debug_and_failing_ones_at_info(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # The image's healthcheck probes every second: at INFO, a day of it is 86,400 lines.
    quiet = settings.model_copy(update={"log_json": True, "log_level": "INFO"})
    configure_logging(quiet)
    app = create_app(quiet.model_copy(update={"preload": (DIGITS,)}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/health/ready")).status_code == 503
        await http.post(f"/api/models/{DIGITS}/load")
        assert (await http.get("/health/ready")).status_code == 200
        assert (await http.get("/health/live")).status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    logged = [(line["route"], line["status"]) for line in lines if line.get("event") == "request"]
    assert logged == [("/health/ready", 503), ("/api/models/{model_id}/load", 200)]


def test_uvicorns_colour_codes_stay_out_of_json_lines() -> None:
    record = logging.makeLogRecord(
        {"msg": "Started server process [1]", "color_message": "Started \x1b[36m%d\x1b[0m"}
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Started server process [1]"
    assert "color_message" not in line


def test_onnx_runtime_keeps_no_device_id_and_sends_nothing(tmp_path: Path) -> None:
    # In a fresh process, as the service loads a model: ONNX Runtime reads the switch only
    # when first imported, which in this test process has happened long ago.
    script = (
        "from ai_orchestrator.backends.onnx import OnnxBackend\n"
        "import onnxruntime\n"
        f"onnxruntime.InferenceSession({str(MODELS / 'digits-classifier.onnx')!r})\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    subprocess.run(
        [sys.executable, "-c", script], env={**environment, "HOME": str(tmp_path)}, check=True
    )
    assert list(tmp_path.iterdir()) == []
