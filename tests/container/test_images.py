"""What each built image is: its user, its files, its tools, its metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.container.engine import ENVIRONMENTS, docker, inspect

NON_ROOT = ("test", "staging", "prod")
SERVING = ("dev", "staging", "prod")
# Commands that must not exist in prod and staging.
FORBIDDEN = ("pip", "pip3", "gcc", "cc", "c++", "g++", "clang", "make", "curl", "wget")
# The only paths the runtime user may write: the sticky temporary directories.
WRITABLE = {"/tmp", "/var/tmp", "/run/lock", "/var/lock", "/dev/shm"}


def run(image: str, *command: str, user: str | None = None) -> str:
    options = ["--user", user] if user else []
    result = docker("run", "--rm", "--entrypoint", command[0], *options, image, *command[1:])
    return result.stdout


@pytest.mark.parametrize("env", NON_ROOT)
def test_image_runs_as_numeric_non_root_user(image: dict[str, str], env: str) -> None:
    assert inspect(image[env])["Config"]["User"] == "10001:10001"
    assert run(image[env], "id", "-u").strip() == "10001"


def test_dev_image_runs_as_root_for_debugging(image: dict[str, str]) -> None:
    assert inspect(image["dev"])["Config"]["User"] in ("", "0", "root")
    assert run(image["dev"], "id", "-u").strip() == "0"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_file_has_a_setuid_or_setgid_bit(image: dict[str, str], env: str) -> None:
    found = run(image[env], "find", "/", "-xdev", "-type", "f", "-perm", "/6000", user="0")
    assert found == ""


@pytest.mark.parametrize("env", NON_ROOT)
def test_runtime_user_can_write_only_to_temporary_directories(
    image: dict[str, str], env: str
) -> None:
    script = "find / -xdev -writable -not -path '/proc/*' -not -path '/tmp/*' 2>/dev/null; true"
    writable = set(run(image[env], "sh", "-c", script).split())
    assert writable <= WRITABLE, writable - WRITABLE


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_application_venv_and_models_are_owned_by_root(image: dict[str, str], env: str) -> None:
    # Not owned by root, or writable by anyone (symbolic links always show as writable).
    found = run(
        image[env],
        "find",
        "/opt/venv",
        "/app",
        "-not",
        "-user",
        "0",
        "-o",
        "-perm",
        "/002",
        "-not",
        "-type",
        "l",
    )
    assert found == ""


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_package_caches_or_apt_lists_are_left(image: dict[str, str], env: str) -> None:
    script = (
        "ls -A /var/lib/apt/lists; find /var/cache/apt /tmp -name '*.deb';"
        "ls -d /root/.cache /opt/build-venv /opt/sbom-venv /stage /src 2>/dev/null; true"
    )
    assert run(image[env], "sh", "-c", script) == ""


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_prod_image_has_no_pip_setuptools_compilers_or_download_tools(
    image: dict[str, str], env: str
) -> None:
    script = (
        "import importlib.util, os, shutil, sys\n"
        f"print([c for c in {FORBIDDEN!r} if shutil.which(c)])\n"
        "print([m for m in ('pip', 'setuptools', 'ensurepip', 'wheel')"
        " if importlib.util.find_spec(m)])\n"
    )
    venv_python = ["/opt/venv/bin/python", "-c", script]
    assert run(image[env], *venv_python).split("\n")[:2] == ["[]", "[]"]
    # The base image's own interpreter, which the venv's python points to, too.
    base = run(image[env], "readlink", "-f", "/opt/venv/bin/python").strip()
    assert run(image[env], base, "-I", "-c", script).split("\n")[:2] == ["[]", "[]"]


def test_staging_image_has_its_documented_troubleshooting_tools(image: dict[str, str]) -> None:
    tools = ("ps", "top", "free", "ss", "ip", "lsof", "nc")
    missing = run(
        image["staging"],
        "sh",
        "-c",
        f"for t in {' '.join(tools)}; do command -v $t >/dev/null || echo $t; done",
    )
    assert missing == ""


def read_sbom(image: str) -> dict[str, Any]:
    sbom: dict[str, Any] = json.loads(
        run(image, "cat", "/usr/share/doc/ai-orchestrator/sbom.cdx.json")
    )
    assert sbom["bomFormat"] == "CycloneDX"
    return sbom


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sbom_is_readable_from_the_image_and_lists_its_python_packages(
    image: dict[str, str], env: str
) -> None:
    sbom = read_sbom(image[env])
    python = {c["name"] for c in sbom["components"] if c["purl"].startswith("pkg:pypi/")}
    assert {"fastapi", "uvicorn", "onnxruntime", "xllamacpp", "numpy"} <= python
    assert sbom["metadata"]["component"]["name"] == "ai-orchestrator"
    with_dev_tools = env in ("dev", "test")
    assert ("pytest" in python) == with_dev_tools
    assert bool({"scikit-learn", "skl2onnx", "setuptools"} & python) == with_dev_tools
    assert "pip" not in python


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_sbom_lists_exactly_the_debian_packages_installed_in_the_image(
    image: dict[str, str], env: str
) -> None:
    sbom = read_sbom(image[env])
    listed = {
        (c["name"], c["version"])
        for c in sbom["components"]
        if c["purl"].startswith("pkg:deb/debian/")
    }
    query = "dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n' | grep '^ii'"
    installed = {
        tuple(line.split()[1:3]) for line in run(image[env], "sh", "-c", query).splitlines()
    }
    assert listed == installed
    names = {name for name, _ in listed}
    assert {"libc6", "libgomp1", "python3"} <= names
    assert ("procps" in names) == (env in ("dev", "staging"))
    assert ("curl" in names) == (env == "dev")
    libc6 = next(c for c in sbom["components"] if c["name"] == "libc6")
    assert libc6["purl"].startswith("pkg:deb/debian/libc6@")
    assert "arch=" in libc6["purl"]
    assert "distro=debian-12" in libc6["purl"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_image_carries_oci_labels_from_the_build_arguments(
    image: dict[str, str], env: str, build_args: dict[str, str]
) -> None:
    labels = inspect(image[env])["Config"]["Labels"]
    prefix = "org.opencontainers.image."
    assert labels[prefix + "version"] == build_args["VERSION"]
    assert labels[prefix + "revision"] == build_args["REVISION"]
    assert labels[prefix + "source"] == build_args["SOURCE"]
    assert labels[prefix + "licenses"] == "Apache-2.0"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_image_exposes_only_port_8000(image: dict[str, str], env: str) -> None:
    assert set(inspect(image[env])["Config"]["ExposedPorts"]) == {"8000/tcp"}


def test_prod_image_with_default_models_is_under_450_mb(image: dict[str, str]) -> None:
    size = inspect(image["prod"])["Size"]
    assert size < 450_000_000, f"{size / 1e6:.0f} MB"
    assert "smollm2-135m-instruct.Q4_1.gguf" in run(image["prod"], "ls", "/app/models")
