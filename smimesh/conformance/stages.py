"""The conformance stage: namespaces with the test app deployed as workloads a, b and c, and
the few things a case does to them (apply SMI objects, make a call a number of times, read
what each app received).

Built by `running` on a `smimesh.testing.meshes.LocalMesh`; handed to every case in `cases`.
Black-box: it talks to the cluster (kubectl) and to the apps' own HTTP endpoints, never to
operator internals. Between cases `reset` deletes every SMI object and zeroes the apps'
counts, so cases are independent. `call`, `received` and `wait_programmed` also work without
a stage, for end-to-end tests that lay out their own namespaces (Flagger's, Argo Rollouts').

Layout of each namespace: Services `a`, `b`, `c` (one app each, port 80 -> 8080) and `backend`
(selects both b and c, as a canary root whose selector overlaps its backends), ServiceAccounts
`service-a`, `service-b`, `service-c`. `strict` denies by default; `open` is permissive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from smimesh.testing import clusters, meshes, workloads

SMI_RESOURCES = (
    "trafficsplits.split.smi-spec.io",
    "traffictargets.access.smi-spec.io",
    "httproutegroups.specs.smi-spec.io",
    "tcproutes.specs.smi-spec.io",
)


class CaseFailedError(AssertionError):
    """A case's expectation did not hold; the message says what was seen."""


class CaseSkippedError(Exception):
    """The case cannot run on this target (it lacks something the case needs); the message
    says what. Reported as `skipped`, which does not fail the run."""


@dataclass(frozen=True)
class Tally:
    ok: int
    failed: int
    codes: Mapping[str, int]


@dataclass
class Namespace:
    name: str
    apps: dict[str, workloads.LocalWorkload] = field(default_factory=dict)

    def url(self, service: str, path: str = "/echo") -> str:
        return f"http://{service}.{self.name}.svc.cluster.local{path}"


@dataclass
class Stage:
    mesh: meshes.LocalMesh
    strict: Namespace
    open: Namespace

    @classmethod
    def build(cls, mesh: meshes.LocalMesh, *, prefix: str) -> Stage:
        spaces = []
        for kind in ("strict", "permissive"):
            name = mesh.namespace(f"{prefix}-{kind[:6]}", access=kind)
            space = Namespace(name)
            for app in ("a", "b", "c"):
                mesh.service(name, app, {"app": app})
            mesh.service(name, "backend", {"tier": "backend"})
            for app in ("a", "b", "c"):
                labels = {"app": app, **({"tier": "backend"} if app != "a" else {})}
                space.apps[app] = mesh.workload(name, f"{app}-1", f"service-{app}", labels)
            spaces.append(space)
        return cls(mesh, strict=spaces[0], open=spaces[1])

    def apply(self, namespace: Namespace, *objects: dict[str, Any]) -> None:
        stamped = [
            {**item, "metadata": {**item.get("metadata", {}), "namespace": namespace.name}}
            for item in objects
        ]
        self.mesh.apply(*stamped)

    def delete(self, namespace: Namespace, kind: str, name: str) -> None:
        result = self.mesh.cluster.kubectl("-n", namespace.name, "delete", kind, name)
        if result.returncode != 0:
            raise CaseFailedError(f"deleting {kind} {name}: {result.stderr.strip()}")

    def reset(self) -> None:
        for namespace in (self.strict, self.open):
            for resource in SMI_RESOURCES:
                self.mesh.cluster.kubectl(
                    "-n", namespace.name, "delete", resource, "--all", "--wait=false"
                )
            for app in namespace.apps.values():
                httpx.delete(f"{app.app_url(8080)}/metrics", timeout=10).raise_for_status()

    def call(
        self,
        source: workloads.LocalWorkload,
        url: str,
        *,
        count: int = 1,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        concurrency: int = 1,
    ) -> Tally:
        """`call` (the module function)."""
        return call(
            source, url, count=count, method=method, headers=headers, concurrency=concurrency
        )

    def received(self, target: workloads.LocalWorkload, caller: workloads.LocalWorkload) -> int:
        """`received` (the module function)."""
        return received(target, caller)

    def eventually(
        self,
        source: workloads.LocalWorkload,
        url: str,
        expect_ok: bool,
        *,
        timeout: float = 20.0,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> Tally:
        """Call once until the outcome is the expected one (configs take a moment to land);
        the last tally is returned, and a CaseFailedError raised if it never came."""
        deadline = time.monotonic() + timeout
        while True:
            tally = self.call(source, url, method=method, headers=headers)
            if (tally.ok == 1) == expect_ok:
                return tally
            if time.monotonic() > deadline:
                wanted = "allowed" if expect_ok else "denied"
                raise CaseFailedError(f"{method} {url} never {wanted} in {timeout:.0f}s: {tally}")
            time.sleep(0.25)

    def wait_programmed(self, namespace: Namespace, resource: str, name: str) -> None:
        """`wait_programmed` (the module function) in one of the stage's namespaces."""
        wait_programmed(self.mesh.cluster, namespace.name, resource, name)


# What a stage does, also usable without one (end-to-end tests build their own namespaces).


def call(
    source: workloads.LocalWorkload,
    url: str,
    *,
    count: int = 1,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    concurrency: int = 1,
) -> Tally:
    """`source`'s app makes the request `count` times through its sidecar."""
    order = {
        "url": url,
        "method": method,
        "count": count,
        "headers": dict(headers or {}),
        "concurrency": concurrency,
    }
    response = httpx.post(f"{source.app_url(8080)}/call", json=order, timeout=120)
    response.raise_for_status()
    body = response.json()
    return Tally(body["ok"], body["failed"], body["codes"])


def received(target: workloads.LocalWorkload, caller: workloads.LocalWorkload) -> int:
    """How many requests `target`'s app has received from `caller`'s app."""
    metrics = httpx.get(f"{target.app_url(8080)}/metrics", timeout=10).json()
    return int(metrics["received"].get(f"{caller.spec.namespace}/{caller.spec.name}", 0))


def wait_programmed(
    cluster: clusters.Cluster, namespace: str, resource: str, name: str, *, timeout: float = 30.0
) -> None:
    """Until the object's Programmed condition is True for its current generation."""
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.kubectl("-n", namespace, "get", resource, name, "-o", "json")
        if result.returncode == 0:
            raw = json.loads(result.stdout)
            generation = raw["metadata"].get("generation")
            for condition in (raw.get("status") or {}).get("conditions") or []:
                if (
                    condition["type"] == "Programmed"
                    and condition["status"] == "True"
                    and condition.get("observedGeneration") == generation
                ):
                    return
        if time.monotonic() > deadline:
            raise CaseFailedError(
                f"{resource} {name} not Programmed in {timeout:.0f}s: {result.stdout[-500:]}"
            )
        time.sleep(0.2)
