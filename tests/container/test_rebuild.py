"""A change to application code rebuilds only the last layers."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from tests.container.engine import build, docker, image_tag

# The target is 15 s on a quiet machine (bench/images.py measures it); this bound
# only catches a rebuild that has stopped using the cache, whatever else shares the cores.
REBUILD_WITHIN_S = 60.0
# What the final stage takes of the code stage: the source, or the whole /app of dev and test.
CODE_COPY = {
    "prod": "COPY --from=code /app/src/ /app/src/",
    "dev": "COPY --from=code /app/ /app/",
}


def steps(output: str) -> list[tuple[str, bool]]:
    """Each build step's instruction, and whether the engine took it from its cache."""
    parts = re.split(r"^Step \d+/\d+ : ", output, flags=re.MULTILINE)[1:]
    return [(part.splitlines()[0], "Using cache" in part) for part in parts]


# prod, the smallest image, and dev, the one with the most files: a step's cost grows
# with the files of the image beneath it.
@pytest.mark.parametrize("env", ["prod", "dev"])
def test_code_only_change_rebuilds_only_the_copy_of_the_code(
    env: str, image: dict[str, str], build_args: dict[str, str], context_copy: Path
) -> None:
    module = context_copy / "src" / "ai_orchestrator" / "api" / "app.py"
    # Unique, or the engine would find this very change in its cache from an earlier run.
    module.write_text(module.read_text() + f"\n# A code-only change: {uuid.uuid4().hex}\n")
    tag = image_tag(env, "code-change", str(os.getpid()))
    try:
        rebuilt = build(env, tag, context_copy, build_args)
    finally:
        docker("rmi", tag, check=False)
    # The global ARG (the first step) and FROM make no layer: they never come from the cache.
    done = [
        (step, cached) for step, cached in steps(rebuilt.output)[1:] if not step.startswith("FROM ")
    ]
    assert len(done) > 30
    # The copy of the source into the code stage, and the final stage's copy of the code.
    assert [step for step, cached in done if not cached] == ["COPY src/ /app/src/", CODE_COPY[env]]
    assert rebuilt.seconds < REBUILD_WITHIN_S, f"code-only rebuild took {rebuilt.seconds:.1f}s"
