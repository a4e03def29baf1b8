"""Properties of the four Dockerfiles that can be read off their text."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from tests.static_docker.dockerfiles import (
    ENVIRONMENTS,
    NON_ROOT,
    ROOT,
    Dockerfile,
    Instruction,
    Stage,
    env_assignments,
    parse,
)

PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")
AIO_ENV = {"dev": "development", "test": "test", "staging": "staging", "prod": "production"}
OCI_LABELS = ("version", "revision", "source", "licenses")
SBOM = "/usr/share/doc/ai-orchestrator/sbom.cdx.json"
# What the rootfs stage may take from the build stages, and where it must land.
COPIED_FROM = {
    ("builder", "/opt/venv"): "/opt/venv",
    ("builder", "/app/models"): "/app/models",
    ("builder", "/stage/dev/"): "/",
    ("sbom", "/stage/image/runtime.cdx.json"): SBOM,
    ("sbom", "/stage/image/dev.cdx.json"): SBOM,
}
# What the final stage takes of the code stage: dev and test also get the tests and their
# settings (pyproject.toml).
CODE_COPY = {
    "dev": "--from=code /app/ /app/",
    "test": "--from=code /app/ /app/",
    "staging": "--from=code /app/src/ /app/src/",
    "prod": "--from=code /app/src/ /app/src/",
}

# What `docker stop` and compose wait for, by default, between SIGTERM and SIGKILL.
DOCKER_STOP_TIMEOUT_S = 10


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def dockerfile(env: str) -> Dockerfile:
    return parse(env)


def copies_from_stages(stage: Stage) -> list[tuple[str, str, str]]:
    """(stage, source, target) of each COPY --from in a stage."""
    copies = []
    for copy in stage.all("COPY"):
        words = copy.args.split()
        if words[0].startswith("--from="):
            copies.append((words[0].removeprefix("--from="), words[1], words[2]))
    return copies


def test_build_stages_are_the_same_text_in_all_four_dockerfiles() -> None:
    texts = {env: parse(env).builder_text() for env in ENVIRONMENTS}
    assert len(set(texts.values())) == 1, "builder stages differ: " + ", ".join(texts)


def test_each_dockerfile_has_the_build_stages_and_one_final_stage_named_after_it(
    env: str, dockerfile: Dockerfile
) -> None:
    assert [stage.name for stage in dockerfile.stages] == [
        "builder",
        "code",
        "system",
        "sbom",
        "rootfs",
        env,
    ]


def test_sbom_stage_is_the_same_in_all_four_dockerfiles() -> None:
    stages = {env: parse(env).stage("sbom") for env in ENVIRONMENTS}
    texts = {tuple((i.keyword, i.args) for i in stage.instructions) for stage in stages.values()}
    assert len(texts) == 1


def test_sbom_stage_reads_the_package_database_of_the_final_stages_base(
    dockerfile: Dockerfile,
) -> None:
    copies = [ins.args for ins in dockerfile.stage("sbom").all("COPY")]
    assert "--from=system /var/lib/dpkg/status dpkg-status" in copies
    assert dockerfile.stage("rootfs").base == "system"


def test_base_comes_from_python_image_pinned_by_version_tag_and_digest(
    dockerfile: Dockerfile,
) -> None:
    (arg,) = dockerfile.global_args
    name, _, default = arg.args.partition("=")
    assert arg.keyword == "ARG"
    assert name == "PYTHON_IMAGE"
    assert PINNED_BASE.match(default), default
    # Every stage with a file system of its own starts from PYTHON_IMAGE; the others
    # start from scratch (code, the final stage) or from the system stage (rootfs).
    bases = {stage.name: stage.base for stage in dockerfile.stages}
    assert bases == {
        "builder": "${PYTHON_IMAGE}",
        "code": "scratch",
        "system": "${PYTHON_IMAGE}",
        "sbom": "${PYTHON_IMAGE}",
        "rootfs": "system",
        dockerfile.final.name: "scratch",
    }


def test_no_dockerfile_names_the_latest_tag(dockerfile: Dockerfile) -> None:
    assert ":latest" not in dockerfile.text


def test_rootfs_stage_takes_only_the_venv_models_and_sbom_from_the_build_stages(
    env: str, dockerfile: Dockerfile
) -> None:
    rootfs = dockerfile.stage("rootfs")
    copies = copies_from_stages(rootfs)
    assert len(copies) == len(rootfs.instructions), "rootfs only copies"
    assert all(COPIED_FROM.get((stage, source)) == target for stage, source, target in copies)
    sources = [source for _, source, _ in copies]
    assert sources[0] == "/opt/venv"
    with_dev_tools = env in ("dev", "test")
    assert ("/stage/dev/" in sources) == with_dev_tools
    sbom = "/stage/image/dev.cdx.json" if with_dev_tools else "/stage/image/runtime.cdx.json"
    assert sbom in sources
    assert "/app/models" in sources


def test_final_stage_is_the_rootfs_as_one_layer_and_then_the_code(
    env: str, dockerfile: Dockerfile
) -> None:
    copies = [ins.args for ins in dockerfile.final.all("COPY")]
    assert copies == ["--from=rootfs / /", CODE_COPY[env]]
    # The code's copy is the last step: nothing after it is redone when only it changes.
    assert dockerfile.final.instructions[-1].args == CODE_COPY[env]


def test_application_code_is_copied_only_after_dependencies_and_models(
    dockerfile: Dockerfile,
) -> None:
    builder = dockerfile.stage("builder").instructions
    assert not [ins for ins in builder if ins.keyword == "COPY" and "src/" in ins.args]
    assert any("prepare_models.py" in ins.args for ins in builder)
    code = dockerfile.stage("code").instructions
    assert {ins.keyword for ins in code} == {"COPY"}
    assert code[-1].args == "src/ /app/src/"


def test_console_script_runs_the_entry_point_that_pyproject_declares(
    dockerfile: Dockerfile,
) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (entry_point,) = pyproject["project"]["scripts"].items()
    name, target = entry_point
    module, _, function = target.partition(":")
    script = next(ins for ins in dockerfile.stage("builder").all("RUN") if ".pth" in ins.args)
    assert f"/opt/venv/bin/{name}" in script.args
    assert f"from {module} import {function}" in script.args
    assert 'echo /app/src > "$site/ai_orchestrator.pth"' in script.args


def test_every_dependency_install_checks_the_locks_hashes(dockerfile: Dockerfile) -> None:
    runs = dockerfile.stage("builder").all("RUN")
    for run in runs:
        for command in re.split(r"&&", run.args):
            if re.search(r"pip (install|download)", command) and "-r " in command:
                assert "--require-hashes" in command, command
            elif re.search(r"pip (install|download)", command):
                assert "--no-deps" in command, f"unlocked install: {command}"


def test_final_stage_runs_nothing_and_only_copies_what_changes_with_the_code(
    dockerfile: Dockerfile,
) -> None:
    # Its packages and user come from the system stage; a code change reruns no step.
    assert not dockerfile.final.all("RUN")
    assert not dockerfile.stage("rootfs").all("RUN")


def test_cmd_is_in_exec_form(dockerfile: Dockerfile) -> None:
    (cmd,) = dockerfile.final.all("CMD")
    assert isinstance(json.loads(cmd.args), list)


def test_only_port_8000_is_exposed(dockerfile: Dockerfile) -> None:
    exposed = [ins.args for stage in dockerfile.stages for ins in stage.all("EXPOSE")]
    assert exposed == ["8000"]


def test_oci_labels_come_from_build_arguments_declared_after_the_last_run_step(
    dockerfile: Dockerfile,
) -> None:
    final = dockerfile.final.instructions
    (label,) = dockerfile.final.all("LABEL")
    for key in OCI_LABELS:
        assert f"org.opencontainers.image.{key}=" in label.args
    for key in ("VERSION", "REVISION", "SOURCE"):
        assert f"${{{key}}}" in label.args
        arg = next(ins for ins in final if ins.keyword == "ARG" and ins.args.startswith(key))
        # A build argument changes the cache key of every RUN after it.
        runs = [i for i, ins in enumerate(final) if ins.keyword == "RUN"]
        assert final.index(arg) > max(runs, default=-1)


def test_environment_is_set_in_one_env_instruction_of_the_final_stage(
    env: str, dockerfile: Dockerfile
) -> None:
    assert not [stage.name for stage in dockerfile.stages[:-1] if stage.all("ENV")]
    (env_instruction,) = dockerfile.final.all("ENV")
    variables = env_assignments(env_instruction)
    assert variables["AIO_ENV"] == AIO_ENV[env]
    assert variables["PATH"].startswith("/opt/venv/bin:")
    if env == "test":
        # The tests set the service's settings themselves; the image must not override them.
        assert [name for name in variables if name.startswith("AIO_")] == ["AIO_ENV"]
        return
    assert variables["AIO_HOST"] == "0.0.0.0"
    assert variables["AIO_PORT"] == "8000"
    assert variables["AIO_PRELOAD"] == "smollm2-135m-instruct,digits-classifier"
    assert variables["AIO_LOG_LEVEL"] == ("DEBUG" if env == "dev" else "INFO")
    # `docker stop` sends SIGKILL 10 s after SIGTERM unless told otherwise: the service's
    # grace ends well before, so the requests it cut short still get their answer.
    assert float(variables["AIO_SHUTDOWN_GRACE_S"]) + 2 <= DOCKER_STOP_TIMEOUT_S


@pytest.mark.parametrize("env", NON_ROOT)
def test_image_runs_as_a_numeric_user_of_uid_10000_or_more(env: str) -> None:
    users = parse(env).final.all("USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].args.partition(":")
    assert re.fullmatch(r"[1-9]\d{4,}", uid), users[-1]
    assert re.fullmatch(r"[1-9]\d{4,}", gid), users[-1]


def test_dev_image_keeps_root_and_says_that_it_is_for_development_only() -> None:
    dockerfile = parse("dev")
    assert not dockerfile.final.all("USER")
    assert "development-only" in dockerfile.text


def test_test_image_has_no_healthcheck_and_runs_the_suite_without_the_engine_tests() -> None:
    dockerfile = parse("test")
    assert [h.args for h in dockerfile.final.all("HEALTHCHECK")] == ["NONE"]
    argv = json.loads(dockerfile.final.all("CMD")[0].args)
    assert argv[1:4] == ["-m", "pytest", "-m"]
    assert argv[4] == "not container"


def run_commands(dockerfile: Dockerfile) -> list[Instruction]:
    return [ins for stage in dockerfile.stages for ins in stage.all("RUN")]


def test_apt_lists_are_removed_in_the_step_that_fetched_them(dockerfile: Dockerfile) -> None:
    for run in run_commands(dockerfile):
        if "apt-get update" in run.args:
            assert "rm -rf /var/lib/apt/lists/*" in run.args, run.line
            assert "--no-install-recommends" in run.args, run.line


def test_final_stages_base_clears_setuid_and_setgid_bits(dockerfile: Dockerfile) -> None:
    (run,) = dockerfile.stage("system").all("RUN")
    assert "find / -xdev -type f -perm /6000 -exec chmod ug-s {} +" in run.args


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_prod_and_staging_remove_pip_setuptools_and_ensurepip_from_the_base_python(
    env: str,
) -> None:
    (run,) = parse(env).stage("system").all("RUN")
    for leftover in ('"$stdlib/ensurepip"', '"$purelib"/pip ', '"$purelib"/setuptools*'):
        assert leftover in run.args


def test_every_checkov_skip_in_a_dockerfile_gives_its_reason(dockerfile: Dockerfile) -> None:
    skips = [line for line in dockerfile.text.splitlines() if line.startswith("# checkov:skip=")]
    for line in skips:
        _, _, reason = line.partition(": ")
        assert len(reason.strip()) > 20, f"skip without a reason: {line}"
