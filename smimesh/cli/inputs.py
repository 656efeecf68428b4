"""The manifests a command reads with `-f FILE|DIR|-`, read one way for every command.

Used by `validating` (`kubectl smi validate`) and `injecting` (`kubectl smi inject`): a
directory is walked recursively in sorted order for YAML and JSON files, `-` is stdin, and
`-f=FILE` is accepted the kubectl way. A file that cannot be read is an `Input` with an
error, not an exception, so each command decides what an unreadable input means to it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".yaml", ".yml", ".json")
"""What a directory walk reads; a file named directly is read whatever its suffix."""


@dataclass(frozen=True)
class Input:
    """One file's text, or why it could not be read."""

    label: str
    """The path as given or found, or `<stdin>`."""
    text: str | None
    error: str | None = None


def read(paths: list[str]) -> list[Input]:
    """Every file `paths` names, in order."""
    found: list[Input] = []
    for given in paths:
        if given.startswith("=") and not Path(given).exists():
            given = given[1:]  # kubectl style `-f=FILE` (click keeps the "=" of short options)
        if given == "-":
            found.append(Input("<stdin>", sys.stdin.read()))
            continue
        path = Path(given)
        targets = (
            sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if path.is_dir()
            else [path]
        )
        for target in targets:
            try:
                found.append(Input(str(target), target.read_text(encoding="utf-8")))
            except FileNotFoundError:
                found.append(Input(str(target), None, "no such file or directory"))
            except (OSError, UnicodeDecodeError) as error:
                found.append(Input(str(target), None, f"cannot read: {error}"))
    return found
