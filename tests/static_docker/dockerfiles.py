"""A small reader for the four Dockerfiles: enough of the syntax to test their properties
(continuation lines, comments, stages), without a parser dependency."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "test", "staging", "prod")
# The environments whose images run as a numeric non-root user.
NON_ROOT = ("test", "staging", "prod")
# The environments whose images serve the API (the test image runs the tests instead).
SERVING = ("dev", "staging", "prod")
BUILDER_END = "# ---- end of the build stages"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    text: str
    global_args: list[Instruction]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found

    def builder_text(self) -> str:
        """The text from the first line through the end of the build stages (builder, code)."""
        end = self.text.index(BUILDER_END)
        return self.text[: self.text.index("\n", end) + 1]


def dockerfile_path(env: str) -> Path:
    return ROOT / f"Dockerfile.{env}"


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their continuation lines joined, comments dropped."""
    result: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        result.append((start, pending + stripped))
        pending = ""
    return result


def parse(env: str) -> Dockerfile:
    path = dockerfile_path(env)
    text = path.read_text()
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), re.sub(r"\s+", " ", args).strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            global_args.append(instruction)
    return Dockerfile(path, text, global_args, stages)


def env_assignments(instruction: Instruction) -> dict[str, str]:
    """The variables of one ENV instruction in its KEY=VALUE form."""
    pairs = (word.partition("=") for word in shlex.split(instruction.args))
    return {key: value for key, _, value in pairs}
