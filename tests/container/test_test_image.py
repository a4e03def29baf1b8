"""The test image's default command runs the suite, and its exit status is the suite's."""

from __future__ import annotations

from pathlib import Path

from tests.container.engine import HARDENED, docker

FAILING_TEST = """
def test_this_deliberately_fails() -> None:
    assert 1 + 1 == 3
"""


def test_test_image_default_command_runs_the_suite_and_passes_on_a_read_only_root(
    image: dict[str, str],
) -> None:
    result = docker("run", "--rm", *HARDENED, image["test"], timeout=1200, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


def test_test_image_default_command_fails_when_a_test_fails(
    image: dict[str, str], tmp_path: Path
) -> None:
    failing = tmp_path / "test_aaa_deliberate_failure.py"
    failing.write_text(FAILING_TEST)
    failing.chmod(0o644)
    # -x stops at the first failure, which this file's name makes the first test run.
    result = docker(
        "run",
        "--rm",
        "-e",
        "PYTEST_ADDOPTS=-x",
        "-v",
        f"{failing}:/app/tests/test_aaa_deliberate_failure.py:ro",
        image["test"],
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stdout[-4000:]
    assert "test_this_deliberately_fails" in result.stdout
