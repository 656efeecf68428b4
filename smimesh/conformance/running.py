"""Runs conformance cases on a stage and collects one result per case.

`run_cases` is environment-agnostic (any `stages.Stage`); `run_local` builds the local
environment: the embedded control plane (or another cluster from `smimesh.testing.clusters`),
the mesh from `manifests/` and the test app as local workloads. Called by
`smimesh conformance run` and by our own tests; results go to `reporting`.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from smimesh.conformance import cases, stages
from smimesh.conformance.cases import registry
from smimesh.testing import clusters, meshes

Outcome = Literal["passed", "failed", "error", "skipped"]
SUCCESSFUL: frozenset[Outcome] = frozenset({"passed", "skipped"})


@dataclass(frozen=True)
class Result:
    case: registry.Case
    outcome: Outcome
    seconds: float
    message: str = ""


def select(focus: Sequence[str], skip: Sequence[str] = ()) -> list[registry.Case]:
    """Cases whose name contains any of `focus` (all if none) and none of `skip`, in
    catalog order."""
    return [
        c
        for c in cases.CASES
        if (not focus or any(p in c.name for p in focus)) and not any(p in c.name for p in skip)
    ]


def run_cases(
    stage: stages.Stage,
    chosen: Sequence[registry.Case],
    *,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    results = []
    for item in chosen:
        started = time.monotonic()
        try:
            stage.reset()
            item.run(stage)
        except stages.CaseFailedError as exc:
            result = Result(item, "failed", time.monotonic() - started, str(exc))
        except stages.CaseSkippedError as exc:
            result = Result(item, "skipped", time.monotonic() - started, str(exc))
        except Exception as exc:  # a case that breaks is reported, and the suite goes on
            where = traceback.extract_tb(exc.__traceback__)[-1]
            message = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
            result = Result(item, "error", time.monotonic() - started, message)
        else:
            result = Result(item, "passed", time.monotonic() - started)
        results.append(result)
        on_result(result)
    return results


def run_local(
    chosen: Sequence[registry.Case],
    *,
    mode: clusters.Mode = "local",
    say: Callable[[str], None] = lambda message: None,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    with clusters.provide(mode, say=say) as cluster, meshes.LocalMesh(cluster, say=say) as mesh:
        say("deploying the test app: a, b, c in a strict and a permissive namespace")
        stage = stages.Stage.build(mesh, prefix=f"smi-{uuid.uuid4().hex[:5]}")
        return run_cases(stage, chosen, on_result=on_result)
