"""Adds an image's Debian packages to a CycloneDX SBOM of its Python environment.

    python sbom_debian.py --dpkg-status STATUS --os-release OS_RELEASE IN.cdx.json OUT.cdx.json

Reads the packages that dpkg's status database lists as installed, and adds each as a
library component with a pkg:deb purl (arch and distro qualifiers, as the purl
specification's examples have them). The result is validated against the CycloneDX schema
before it is written. Runs in the Dockerfiles' SBOM stage, with the cyclonedx-python-lib
that cyclonedx-bom brings (requirements/sbom.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL


def paragraphs(text: str) -> list[dict[str, str]]:
    """The stanzas of a deb822 file (dpkg's status database), continuation lines dropped."""
    stanzas: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line[0].isspace():
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def distro(os_release: str) -> str:
    """debian-12, say, from /etc/os-release."""
    values = dict(line.split("=", 1) for line in os_release.splitlines() if "=" in line)
    return f"{values['ID'].strip(chr(34))}-{values['VERSION_ID'].strip(chr(34))}"


def debian_components(status: str, distribution: str) -> list[Component]:
    components = []
    for fields in paragraphs(status):
        if fields.get("Status", "").split()[-1:] != ["installed"]:
            continue
        purl = PackageURL(
            type="deb",
            namespace="debian",
            name=fields["Package"],
            version=fields["Version"],
            qualifiers={"arch": fields["Architecture"], "distro": distribution},
        )
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=fields["Package"],
                version=fields["Version"],
                purl=purl,
                bom_ref=purl.to_string(),
                description=fields.get("Description"),
            )
        )
    return components


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpkg-status", type=Path, default=Path("/var/lib/dpkg/status"))
    parser.add_argument("--os-release", type=Path, default=Path("/etc/os-release"))
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()

    bom = Bom.from_json(json.loads(args.input.read_text()))  # type: ignore[attr-defined]
    packages = debian_components(args.dpkg_status.read_text(), distro(args.os_release.read_text()))
    bom.components.update(packages)

    document = JsonV1Dot6(bom).output_as_string(indent=2)
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document)
    if errors:
        sys.exit(f"{args.output}: not a valid CycloneDX 1.6 document: {errors}")
    args.output.write_text(document + "\n")
    print(f"{args.output}: {len(packages)} Debian packages, {len(bom.components)} components")


if __name__ == "__main__":
    main()
