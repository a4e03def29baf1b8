"""Session fixtures for the engine-level tests: the engine, the base image, the images.

Every test here needs a container engine. Where none answers, each of them is skipped
with a reason that `-ra` prints in the summary, so the skip cannot go unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.container.engine import ENVIRONMENTS, LOCAL_BASE, ROOT, Build, build, image_tag

ENGINE_MISSING = "NO CONTAINER ENGINE REACHABLE, ENGINE TESTS NOT RUN"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip(f"{ENGINE_MISSING}: no docker command")
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"{ENGINE_MISSING}: docker info timed out")
    if info.returncode != 0:
        pytest.skip(f"{ENGINE_MISSING}: {info.stderr.strip()[:200]}")


@pytest.fixture(scope="session")
def python_image(engine: None) -> str:
    """The base image: PYTHON_IMAGE if set (say, the official one where a registry answers),
    else the local debootstrap build, made once and then reused."""
    chosen = os.environ.get("PYTHON_IMAGE")
    if chosen:
        return chosen
    subprocess.run(
        [str(ROOT / "scripts" / "build-base-image.sh"), LOCAL_BASE], check=True, timeout=900
    )
    return LOCAL_BASE


@pytest.fixture(scope="session")
def build_args(python_image: str) -> dict[str, str]:
    return {
        "PYTHON_IMAGE": python_image,
        "VERSION": "0.1.0-test",
        "REVISION": "test-revision",
        "SOURCE": "https://example.invalid/alt-las/ai-orchestrator",
    }


@pytest.fixture(scope="session")
def images(build_args: dict[str, str]) -> dict[str, Build]:
    """The four images, built from the working tree under this checkout's tags (image_tag),
    by the README's command but for the tag. The engine's cache makes a second session's
    builds take seconds, and builds shared with other checkouts too."""
    return {env: build(env, image_tag(env), ROOT, build_args) for env in ENVIRONMENTS}


@pytest.fixture(scope="session")
def image(images: dict[str, Build]) -> dict[str, str]:
    return {env: built.image for env, built in images.items()}


@pytest.fixture
def context_copy(tmp_path: Path) -> Path:
    """A copy of the build context, to change without touching the working tree."""
    copy = tmp_path / "context"
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", ".stamps", "__pycache__", "*.gguf", "*.onnx", "*.json", ".*_cache"
    )
    shutil.copytree(ROOT, copy, ignore=ignore, symlinks=True)
    return copy
