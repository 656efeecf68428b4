"""Problems found in SMI objects: a field path, a reason, a severity.

Produced by `documents` (YAML and schema), `validating` (semantics) and `conversion` errors;
rendered by `smimesh.cli.validating` and, later, the validating webhook and status conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Problem", "Severity", "field_path", "is_invalid"]

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding. `path` is like `spec.backends[1].weight` ("" for the whole document)."""

    path: str
    reason: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.path or "(document)"
        return f"{self.severity}: {where}: {self.reason}"


def field_path(parts: Sequence[str | int]) -> str:
    """`("spec", "backends", 1, "weight")` -> `spec.backends[1].weight`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def is_invalid(problems: Sequence[Problem]) -> bool:
    return any(problem.severity == "error" for problem in problems)
