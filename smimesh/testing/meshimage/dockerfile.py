"""Reads a Dockerfile into typed stages, the one recipe `building` follows instruction by
instruction (and `docker build` / `buildah bud` follow too).

Pure: text in, `Dockerfile` out. Handles comments, `\\` continuations, the `# syntax=` parser
directive, ARG (before and after FROM) with `$NAME`/`${NAME}`/`${NAME:-default}`
substitution, JSON and shell forms. An instruction the builder does not implement (ADD,
ONBUILD, HEALTHCHECK, VOLUME, ...) or a flag it does not know is a `DockerfileError` with its
line number, never silently skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from smimesh.testing.meshimage import failures

IMPLEMENTED = (
    "FROM",
    "ARG",
    "ENV",
    "WORKDIR",
    "COPY",
    "RUN",
    "SHELL",
    "USER",
    "LABEL",
    "EXPOSE",
    "CMD",
)
DEFAULT_SHELL = ("/bin/sh", "-c")
BASE_ENV = (("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),)
"""The environment a Debian base image starts with (as `debian:bookworm-slim` sets it)."""


class DockerfileError(failures.BuildError):
    """The Dockerfile cannot be built here; the message names the line and what to change."""


@dataclass(frozen=True)
class Copy:
    line: int
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None = None
    kind: Literal["COPY"] = "COPY"


@dataclass(frozen=True)
class Run:
    line: int
    command: tuple[str, ...]
    """The argv: the JSON form as written, the shell form as SHELL + [text]."""
    text: str
    kind: Literal["RUN"] = "RUN"


@dataclass(frozen=True)
class Env:
    line: int
    values: tuple[tuple[str, str], ...]
    kind: Literal["ENV"] = "ENV"


@dataclass(frozen=True)
class Workdir:
    line: int
    path: str
    kind: Literal["WORKDIR"] = "WORKDIR"


@dataclass(frozen=True)
class User:
    line: int
    user: str
    kind: Literal["USER"] = "USER"


Step = Copy | Run | Env | Workdir | User


@dataclass(frozen=True)
class Stage:
    """One FROM and what follows it; metadata (labels, ports, cmd) is folded in as parsed."""

    index: int
    base: str
    name: str | None
    steps: tuple[Step, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Dockerfile:
    stages: tuple[Stage, ...]

    def stage(self, ref: str) -> Stage:
        """A stage by name or index, as `COPY --from=` names it."""
        for stage in self.stages:
            if stage.name == ref or str(stage.index) == ref:
                return stage
        raise DockerfileError(f"COPY --from={ref}: no earlier stage has that name")


_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """`$NAME`, `${NAME}` and `${NAME:-default}` replaced; an unknown name becomes empty (as
    in docker)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        value = variables.get(name, "")
        if not value and match.group("default") is not None:
            return match.group("default")
        return value

    return _VARIABLE.sub(replace, text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined, comments dropped."""
    found: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        found.append((start, " ".join(part.strip() for part in pending if part.strip())))
        pending = []
    if pending:
        found.append((start, " ".join(pending)))
    return found


def _json_or_none(line: int, rest: str) -> tuple[str, ...] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except json.JSONDecodeError as exc:
        raise DockerfileError(f"line {line}: not a JSON array: {rest!r} ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DockerfileError(f"line {line}: expected a JSON array of strings: {rest!r}")
    return tuple(value)


def _flags(line: int, rest: str, allowed: Sequence[str]) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(
                f"line {line}: the flag --{name} is not implemented by this builder"
            )
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def _pairs(line: int, rest: str, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` (or the legacy `K V`) of ENV and LABEL, values substituted."""
    words = _split_words(line, rest)
    if words and "=" not in words[0]:
        key, _, value = rest.partition(" ")
        return [(key, substitute(value.strip(), variables))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(f"line {line}: expected KEY=VALUE, got {word!r}")
        pairs.append((key, substitute(value, variables)))
    return pairs


def _split_words(line: int, rest: str) -> list[str]:
    """Whitespace-separated words, double or single quotes grouping (quotes removed)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    started = False
    for char in rest:
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
        elif char in "\"'":
            quote, started = char, True
        elif char.isspace():
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
    if quote:
        raise DockerfileError(f"line {line}: unterminated quote in {rest!r}")
    if started:
        words.append("".join(current))
    return words


def parse(text: str, *, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    """The stages of a Dockerfile; `build_args` override ARG defaults (as `--build-arg`)."""
    overrides = dict(build_args or {})
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: dict[str, object] | None = None
    steps: list[Step] = []
    variables: dict[str, str] = {}
    shell: tuple[str, ...] = DEFAULT_SHELL

    def close() -> None:
        if current is not None:
            stages.append(Stage(steps=tuple(steps), **current))  # type: ignore[arg-type]

    for line, instruction in logical_lines(text):
        keyword, _, rest = instruction.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword not in IMPLEMENTED:
            raise DockerfileError(
                f"line {line}: {keyword} is not implemented by this builder "
                f"(it implements {', '.join(IMPLEMENTED)}); build this file with docker or buildah"
            )
        if keyword == "ARG":
            name, sep, default = rest.partition("=")
            scope = global_args if current is None else variables
            value = overrides.get(name, substitute(default, {**global_args, **variables}))
            if not sep and name not in overrides:
                value = global_args.get(name, "") if current is not None else ""
            scope[name] = value
            continue
        if keyword == "FROM":
            close()
            flags, rest = _flags(line, rest, ())
            words = substitute(rest, global_args).split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
                raise DockerfileError(f"line {line}: expected `FROM image [AS name]`: {rest!r}")
            current = {
                "index": len(stages),
                "base": words[0],
                "name": words[2] if len(words) == 3 else None,
                "labels": {},
                "exposed": (),
                "cmd": None,
            }
            steps, variables, shell = [], {}, DEFAULT_SHELL
            continue
        if current is None:
            raise DockerfileError(f"line {line}: {keyword} before the first FROM")
        scope = {**variables, **dict(BASE_ENV)}
        scope.update((k, v) for step in steps if isinstance(step, Env) for k, v in step.values)
        if keyword == "ENV":
            steps.append(Env(line, tuple(_pairs(line, rest, scope))))
        elif keyword == "LABEL":
            labels = dict(current["labels"])  # type: ignore[call-overload]
            labels.update(_pairs(line, rest, scope))
            current["labels"] = labels
        elif keyword == "WORKDIR":
            steps.append(Workdir(line, substitute(rest, scope)))
        elif keyword == "USER":
            steps.append(User(line, substitute(rest, scope)))
        elif keyword == "EXPOSE":
            ports = substitute(rest, scope).split()
            current["exposed"] = (*current["exposed"], *ports)  # type: ignore[misc]
        elif keyword == "SHELL":
            parsed = _json_or_none(line, rest)
            if not parsed:
                raise DockerfileError(f"line {line}: SHELL needs the JSON form: {rest!r}")
            shell = parsed
        elif keyword == "CMD":
            current["cmd"] = _json_or_none(line, rest) or (*shell, rest)
        elif keyword == "RUN":
            flags, rest = _flags(line, rest, ())
            argv = _json_or_none(line, rest) or (*shell, rest)
            steps.append(Run(line, argv, rest))
        elif keyword == "COPY":
            flags, rest = _flags(line, rest, ("from",))
            written = _json_or_none(line, rest) or tuple(_split_words(line, rest))
            copied = tuple(substitute(word, scope) for word in written)
            if len(copied) < 2:
                raise DockerfileError(f"line {line}: COPY needs a source and a destination")
            steps.append(Copy(line, copied[:-1], copied[-1], flags.get("from") or None))
    close()
    if not stages:
        raise DockerfileError("no FROM: nothing to build")
    return Dockerfile(tuple(stages))
