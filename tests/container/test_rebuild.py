"""A change to application code rebuilds only the last layers."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from tests.container.engine import build, docker, image_tag

# The target is 15 s on a quiet machine (bench/images.py measures it); this bound
# only catches a rebuild that has stopped using the cache, whatever else shares the cores.
REBUILD_WITHIN_S = 60.0


def steps(output: str) -> list[tuple[str, bool]]:
    """Each build step's instruction, and whether the engine took it from its cache."""
    parts = re.split(r"^Step \d+/\d+ : ", output, flags=re.MULTILINE)[1:]
    return [(part.splitlines()[0], "Using cache" in part) for part in parts]


def test_code_only_change_rebuilds_only_the_last_layers_of_prod(
    image: dict[str, str], build_args: dict[str, str], context_copy: Path
) -> None:
    module = context_copy / "src" / "ai_orchestrator" / "api" / "app.py"
    # Unique, or the engine would find this very change in its cache from an earlier run.
    module.write_text(module.read_text() + f"\n# A code-only change: {uuid.uuid4().hex}\n")
    tag = image_tag("prod", "code-change", str(os.getpid()))
    try:
        rebuilt = build("prod", tag, context_copy, build_args)
    finally:
        docker("rmi", tag, check=False)
    # FROM and the global ARG never come from the cache: they make no layer.
    done = [(step, cached) for step, cached in steps(rebuilt.output) if step.split()[0] != "FROM"]
    first_miss = next(i for i, (_, cached) in enumerate(done) if not cached and i > 0)
    assert done[first_miss][0] == "COPY src/ src/", done[first_miss]
    # Every step after the app stage (the system and sbom stages, the final stage) comes
    # from the cache but the copy of the rebuilt application.
    after_app = next(
        i for i, (step, _) in enumerate(steps(rebuilt.output)) if step.endswith(" AS system")
    )
    missed = [step for step, cached in steps(rebuilt.output)[after_app:] if not cached]
    assert [step for step in missed if not step.startswith("FROM ")] == [
        "COPY --from=app /stage/app/ /"
    ]
    assert rebuilt.seconds < REBUILD_WITHIN_S, f"code-only rebuild took {rebuilt.seconds:.1f}s"
