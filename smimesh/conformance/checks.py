"""Health checks as small objects — a description, a `run`, a hint — and the runner that
walks groups of them, in the manner of `linkerd check`.

The catalog of smimesh's checks is in `smimesh.conformance.catalog`; `kubectl smi check` runs
it and renders the outcomes as text or JSON, and the conformance suite runs the same checks
before its scenarios. Checks talk only to the Kubernetes API, never to operator internals.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import urllib3
from kubernetes import client

from smimesh.kube import names

Status = Literal["ok", "warn", "fail", "skip"]
SYMBOLS: dict[Status, str] = {"ok": "✔", "warn": "‼", "fail": "✖", "skip": "-"}


@dataclass(frozen=True)
class Verdict:
    """What one check found: its status and one line of detail (counts, names, ages)."""

    status: Status
    detail: str = ""


def ok(detail: str = "") -> Verdict:
    return Verdict("ok", detail)


def warn(detail: str) -> Verdict:
    return Verdict("warn", detail)


def fail(detail: str) -> Verdict:
    return Verdict("fail", detail)


def skip(detail: str) -> Verdict:
    return Verdict("skip", detail)


@dataclass
class CheckContext:
    """What checks read: the API, the mesh namespace, a clock, and a cache they share (so
    a later check reuses what an earlier one fetched)."""

    api: client.ApiClient
    namespace: str = names.MESH_NAMESPACE
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    timeout: float = 10.0
    cache: dict[str, Any] = field(default_factory=dict)

    def remember(self, key: str, fetch: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = fetch()
        return self.cache[key]


@dataclass(frozen=True)
class Check:
    """One check. `fatal`: if it fails, the checks after it cannot say anything useful."""

    description: str
    hint: str
    run: Callable[[CheckContext], Verdict]
    fatal: bool = False


@dataclass(frozen=True)
class Group:
    name: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Outcome:
    group: str
    description: str
    status: Status
    detail: str
    hint: str

    def as_json(self) -> dict[str, str]:
        return {
            "group": self.group,
            "description": self.description,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint if self.status in ("warn", "fail") else "",
        }


def _api_error(exc: BaseException) -> str:
    if isinstance(exc, client.ApiException):
        return f"the API answered {exc.status} {exc.reason}".strip()
    lines = str(exc).strip().splitlines()
    return f"the API did not answer: {lines[-1] if lines else type(exc).__name__}"


def run(groups: Iterable[Group], context: CheckContext) -> Iterator[Outcome]:
    """Run every check in order, yielding each outcome as soon as it is known. An exception
    in a check is that check's failure; after a fatal failure nothing more runs."""
    for group in groups:
        for check in group.checks:
            try:
                verdict = check.run(context)
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                verdict = fail(_api_error(exc))
            except Exception as exc:  # a bug in a check must not hide the others
                verdict = fail(f"the check itself failed: {type(exc).__name__}: {exc}")
            yield Outcome(group.name, check.description, verdict.status, verdict.detail, check.hint)
            if check.fatal and verdict.status == "fail":
                return


def succeeded(outcomes: Iterable[Outcome]) -> bool:
    """True unless some check failed (warnings and skips pass)."""
    return all(outcome.status != "fail" for outcome in outcomes)
