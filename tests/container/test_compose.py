"""The compose files: valid for this machine's docker-compose, hardened, and working."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from typing import Any

import pytest
import yaml

from tests.container.engine import ROOT, api_keys_file, get, inspect
from tests.static_docker.dockerfiles import env_assignments, parse

COMPOSE = ROOT / "deploy" / "compose"
ENVIRONMENTS = ("dev", "test", "staging", "prod")


def compose(
    env: str, *args: str, project: str = "aio-check", image: str = "", timeout: float = 180
) -> str:
    """docker-compose on env's file; image, if given, replaces the file's default image."""
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.skip("NO docker-compose COMMAND, COMPOSE TESTS NOT RUN")
    result = subprocess.run(
        [executable, "-f", str(COMPOSE / f"{env}.yml"), "-p", project, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        # Not the shell's AIO_* variables: the module-scoped configs come before conftest
        # removes them.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AIO_")},
            "AIO_PUBLISH": "127.0.0.1:",
            "AIO_API_KEYS_FILE_ON_HOST": str(api_keys_file()),
            **({"AIO_IMAGE": image} if image else {}),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def configs() -> dict[str, dict[str, Any]]:
    """Each compose file as docker-compose itself reads it."""
    return {env: yaml.safe_load(compose(env, "config")) for env in ENVIRONMENTS}


@pytest.fixture(params=ENVIRONMENTS)
def service(
    request: pytest.FixtureRequest, configs: dict[str, dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    env: str = request.param
    (spec,) = configs[env]["services"].values()
    return env, spec


def test_compose_file_runs_the_environments_image_unless_aio_image_names_another(
    service: tuple[str, dict[str, Any]],
) -> None:
    env, spec = service
    assert spec["image"] == f"alt-las/ai-orchestrator:{env}"
    other = yaml.safe_load(compose(env, "config", image="example.invalid/other:1"))
    (other_spec,) = other["services"].values()
    assert other_spec["image"] == "example.invalid/other:1"


def test_compose_file_limits_memory_cpu_and_processes(service: tuple[str, dict[str, Any]]) -> None:
    _, spec = service
    assert spec["mem_limit"]
    assert spec["cpus"]
    assert spec["pids_limit"] > 0


def test_compose_file_drops_capabilities_and_forbids_new_privileges(
    service: tuple[str, dict[str, Any]],
) -> None:
    _, spec = service
    assert spec["cap_drop"] == ["ALL"]
    assert spec["security_opt"] == ["no-new-privileges:true"]


def test_compose_file_has_read_only_root_and_tmpfs_except_in_dev(
    service: tuple[str, dict[str, Any]],
) -> None:
    env, spec = service
    assert spec["read_only"] is (env != "dev")
    assert any(mount.startswith("/tmp") for mount in spec["tmpfs"])


def test_compose_file_has_healthcheck_and_restart_policy(
    service: tuple[str, dict[str, Any]],
) -> None:
    env, spec = service
    if env == "test":
        # The test container exits with the suite's status; that is its check.
        assert spec["healthcheck"] == {"test": ["NONE"]}
        assert spec["restart"] == "no"
    else:
        assert spec["healthcheck"]["interval"]
        assert spec["restart"] == ("no" if env == "dev" else "unless-stopped")


def _seconds(duration: str) -> float:
    """A compose duration ("30s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_compose_file_stops_the_service_only_after_its_own_shutdown_grace(
    env: str, configs: dict[str, dict[str, Any]]
) -> None:
    # Not the test file's service: it serves nothing, it runs the suite and exits.
    (spec,) = configs[env]["services"].values()
    variables = env_assignments(parse(env).final.all("ENV")[0])
    grace = float(
        (spec.get("environment") or {}).get("AIO_SHUTDOWN_GRACE_S")
        or variables["AIO_SHUTDOWN_GRACE_S"]
    )
    # Room, after the grace, to answer what it cut short and exit 0 before SIGKILL.
    assert _seconds(spec.get("stop_grace_period", "10s")) >= grace + 2


def test_compose_file_puts_the_service_on_an_internal_network(
    service: tuple[str, dict[str, Any]], configs: dict[str, dict[str, Any]]
) -> None:
    env, spec = service
    config = configs[env]
    assert "backend" in spec["networks"]
    assert config["networks"]["backend"]["internal"] is True
    for name in spec["networks"]:
        network = config["networks"][name]
        assert network.get("internal") or network["driver_opts"] == {
            "com.docker.network.bridge.enable_ip_masquerade": "false"
        }


def _bytes(size: str) -> int:
    """A compose memory size ("1g", "512m") in bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    suffix = size[-1].lower()
    return int(size[:-1]) * units[suffix] if suffix in units else int(size)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_compose_environment_starts_healthy_with_its_limits(
    env: str, image: dict[str, str], configs: dict[str, dict[str, Any]]
) -> None:
    (spec,) = configs[env]["services"].values()
    # Unique: other checkouts on this machine may run the same test on the same engine.
    project = f"aio-compose-{env}-{os.getpid()}"
    try:
        # This checkout's build, not whatever `make images` last tagged.
        compose(env, "up", "-d", "--no-build", project=project, image=image[env])
        container_id = compose(env, "ps", "-q", project=project, image=image[env]).strip()
        assert inspect(container_id)["Config"]["Image"] == image[env]
        deadline = time.monotonic() + 90
        while inspect(container_id)["State"]["Health"]["Status"] != "healthy":
            assert time.monotonic() < deadline, f"{env} compose service never became healthy"
            time.sleep(0.5)
        details = inspect(container_id)
        host = details["HostConfig"]
        # What the engine applied is what the file asks for.
        assert host["ReadonlyRootfs"] is spec["read_only"]
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["Memory"] == _bytes(str(spec["mem_limit"]))
        assert host["NanoCpus"] == int(float(spec["cpus"]) * 1e9)
        assert host["PidsLimit"] == spec["pids_limit"]
        assert host["RestartPolicy"]["Name"] == spec["restart"]
        binding = details["NetworkSettings"]["Ports"]["8000/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1"
        assert get(f"http://127.0.0.1:{binding['HostPort']}/health/ready")[0] == 200
        # Stopped as compose stops it: the service exits by itself, not by SIGKILL.
        compose(env, "stop", project=project, image=image[env], timeout=120)
        assert inspect(container_id)["State"]["ExitCode"] == 0, inspect(container_id)["State"]
    finally:
        compose(env, "down", "--volumes", "--timeout", "30", project=project, image=image[env])


def test_test_compose_environment_exits_with_the_suites_status(image: dict[str, str]) -> None:
    project = f"aio-compose-test-{os.getpid()}"
    try:
        # compose() asserts a zero exit, which --exit-code-from takes from the suite.
        output = compose(
            "test",
            "up",
            "--no-build",
            "--exit-code-from",
            "ai-orchestrator-tests",
            project=project,
            image=image["test"],
            timeout=900,
        )
        assert " passed" in output
    finally:
        compose("test", "down", "--volumes", project=project, image=image["test"])


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_compose_files_default_key_file_is_the_one_the_docs_make_and_git_ignores(
    env: str,
) -> None:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.skip("NO docker-compose COMMAND, COMPOSE TESTS NOT RUN")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIO_")}
    result = subprocess.run(
        [executable, "-f", str(COMPOSE / f"{env}.yml"), "config"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
    )
    assert yaml.safe_load(result.stdout)["secrets"]["api_keys"]["file"] == str(
        ROOT / "api-keys.txt"
    )
    assert '-v "$PWD/api-keys.txt:' in (ROOT / "docs" / "containers.md").read_text()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "api-keys.txt"], cwd=ROOT, check=False, timeout=30
    )
    assert ignored.returncode == 0, "api-keys.txt is not git-ignored"
