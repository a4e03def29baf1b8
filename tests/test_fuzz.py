"""Schemathesis against the service's own OpenAPI schema, through a real uvicorn: no input
may produce a 5xx.

The service runs with small limits (8 tokens, 512-character prompts) so that the cases
that reach the LLM stay short; the examples per route are bounded for the same reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case

from tests.conftest import DIGITS, FIGURES, LLM
from tests.server import ServiceProcess

pytestmark = [pytest.mark.server, pytest.mark.llm]
CASES: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzzed_service() -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        preload=f"{LLM},{DIGITS}",
        AIO_MAX_TOKENS_LIMIT="8",
        AIO_MAX_PROMPT_CHARS="512",
        AIO_LOG_LEVEL="WARNING",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        assert process.terminate() == 0, process.log()


@pytest.fixture(scope="module")
def api_schema(fuzzed_service: ServiceProcess) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_service.url}/openapi.json")


def fuzz(operation: Any, strategy: Any, examples: int) -> int:
    """Send ``examples`` cases drawn from ``strategy``; fail on the first 5xx."""
    sent = 0

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=strategy)
    def run(case: Case[Any]) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(checks=[not_a_server_error], timeout=120)

    # Unsatisfiable: nothing to make invalid, on a route without parameters or body.
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()
    return sent


# The schema is read from the running service, so its operations are only known once the
# fixture has started it; schemathesis's own pytest plugin, which parametrizes at
# collection, does not run on pytest 9 ('Function' object has no attribute '_nodeid').
def test_no_input_gets_a_server_error(api_schema: Any) -> None:
    for result in api_schema.get_all_operations():
        operation = result.ok()
        # Real model ids reach past the 404s; not for unload, which would (rightly) make
        # the readiness routes answer 503 from then on.
        real = "{model_id}" in operation.path and not operation.path.endswith("/unload")
        pinned = {"model_id": DIGITS} if real else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(mode)
            CASES[operation.label] = CASES.get(operation.label, 0) + fuzz(operation, strategy, 40)
        if pinned:
            strategy = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned)
            CASES[operation.label] += fuzz(operation, strategy, 20)
    FIGURES.append(
        f"fuzz: {sum(CASES.values())} schemathesis cases over {len(CASES)} operations, no 5xx"
    )
