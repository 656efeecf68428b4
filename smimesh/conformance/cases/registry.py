"""How a conformance case is declared: a name, the spec version it checks, a one-line
description, and a function of the stage that raises `stages.CaseFailedError` when the mesh
does not behave. The case modules (`access`, `specs`, `splits`) register into `CASES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from smimesh.conformance import stages

Run = Callable[[stages.Stage], None]


@dataclass(frozen=True)
class Case:
    name: str
    spec: str
    description: str
    run: Run
    origin: str = "smimesh"
    """"smi-conformance" for the public suite's cases, "smimesh" for the ones it lacks."""


CASES: list[Case] = []


def case(
    name: str, *, spec: str, description: str, origin: str = "smimesh"
) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        CASES.append(Case(name, spec, description, run, origin))
        return run

    return register


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise stages.CaseFailedError(message)
