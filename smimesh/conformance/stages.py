"""The conformance stage: namespaces with the test app deployed as workloads a, b and c, and
the few things a case does to them (apply SMI objects, make a call a number of times, read
what each app received).

Built by `build` on a `smimesh.testing.meshes.LocalMesh` (local workloads) or by `deploying`
on any cluster (Pods, for any mesh `profiles` knows); handed to every case in `cases`.
Black-box: it talks to the cluster (kubectl) and to the apps' own HTTP endpoints through
`apps.App` handles, never to operator internals. Between cases `reset` deletes every SMI
object and zeroes the apps' counts, so cases are independent. `call`, `received` and
`wait_programmed` also work without a stage, for end-to-end tests that lay out their own
namespaces (Flagger's, Argo Rollouts').

Layout of each namespace: Services `a`, `b`, `c` (one app each, port 80 -> 8080) and `backend`
(selects both b and c, as a canary root whose selector overlaps its backends), ServiceAccounts
`service-a`, `service-b`, `service-c`. `strict` denies by default; `open` is permissive
where the mesh can say so per namespace (`Stage.permissive`; cases that need it skip if not).
`Stage.programmed` says how to know a change landed: our status conditions, or (other meshes)
only by traffic, so cases poll with `eventually` and measurements are retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smimesh._aio import waiting
from smimesh.conformance import apps, profiles
from smimesh.testing import clusters, launching, meshes, workloads

Participant = apps.App | workloads.LocalWorkload

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
    apps: dict[str, apps.App] = field(default_factory=dict)

    def url(self, service: str, path: str = "/echo") -> str:
        return f"http://{service}.{self.name}.svc.cluster.local{path}"


@dataclass
class Stage:
    cluster: clusters.Cluster
    strict: Namespace
    open: Namespace
    programmed: profiles.Programmed = "conditions"
    permissive: str = ""
    """Empty if `open` is permissive; otherwise why the mesh cannot make it so."""

    @classmethod
    def build(
        cls,
        mesh: meshes.LocalMesh,
        *,
        prefix: str,
        isolation: launching.Isolation = "address",
    ) -> Stage:
        """The stage on a local mesh: the apps run as local workloads (`isolation="netns"`:
        each in a network namespace of its own, its traffic intercepted transparently)."""
        spaces = []
        for kind in ("strict", "permissive"):
            name = mesh.namespace(f"{prefix}-{kind[:6]}", access=kind)
            space = Namespace(name)
            for app in ("a", "b", "c"):
                mesh.service(name, app, {"app": app})
            mesh.service(name, "backend", {"tier": "backend"})
            for app in ("a", "b", "c"):
                labels = {"app": app, **({"tier": "backend"} if app != "a" else {})}
                workload = mesh.workload(
                    name, f"{app}-1", f"service-{app}", labels, isolation=isolation
                )
                space.apps[app] = apps.LocalApp(workload)
            spaces.append(space)
        return cls(mesh.cluster, strict=spaces[0], open=spaces[1])

    def need_permissive(self) -> None:
        """Skip the case (CaseSkippedError) unless `open` admits every caller."""
        if self.permissive:
            raise CaseSkippedError(f"needs a permissive namespace: {self.permissive}")

    def need_conditions(self) -> None:
        """Skip the case unless the mesh reports smimesh's status conditions."""
        if self.programmed != "conditions":
            raise CaseSkippedError("reads smimesh's status conditions, which this mesh lacks")

    def apply(self, namespace: Namespace, *objects: dict[str, Any]) -> None:
        stamped = [
            {**item, "metadata": {**item.get("metadata", {}), "namespace": namespace.name}}
            for item in objects
        ]
        items = {"apiVersion": "v1", "kind": "List", "items": stamped}
        result = self.cluster.kubectl("apply", "-f", "-", input=json.dumps(items))
        if result.returncode != 0:
            raise CaseFailedError(f"applying {len(stamped)} objects: {result.stderr.strip()}")

    def delete(self, namespace: Namespace, kind: str, name: str) -> None:
        result = self.cluster.kubectl("-n", namespace.name, "delete", kind, name)
        if result.returncode != 0:
            raise CaseFailedError(f"deleting {kind} {name}: {result.stderr.strip()}")

    def reset(self) -> None:
        for namespace in (self.strict, self.open):
            for resource in SMI_RESOURCES:
                self.cluster.kubectl(
                    "-n", namespace.name, "delete", resource, "--all", "--wait=false"
                )
            for app in namespace.apps.values():
                app.request("DELETE", "/metrics", timeout=10)

    def call(
        self,
        source: Participant,
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

    def received(self, target: Participant, caller: Participant) -> int:
        """`received` (the module function)."""
        return received(target, caller)

    def eventually(
        self,
        source: Participant,
        url: str,
        expect_ok: bool,
        *,
        timeout: float = 20.0,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> Tally:
        """Call once until the outcome is the expected one (configs take a moment to land);
        the last tally is returned, and a CaseFailedError raised if it never came."""
        last: Tally | None = None

        def outcome() -> Tally | None:
            nonlocal last
            last = self.call(source, url, method=method, headers=headers)
            return last if (last.ok == 1) == expect_ok else None

        wanted = "allowed" if expect_ok else "denied"
        return waiting.eventually_sync(
            outcome,
            timeout=timeout,
            message=lambda: f"{method} {url} never {wanted} in {timeout:.0f}s: {last}",
            interval=0.25,
            error=CaseFailedError,
        )

    def wait_programmed(self, namespace: Namespace, resource: str, name: str) -> None:
        """`wait_programmed` (the module function) in one of the stage's namespaces. A mesh
        without our conditions cannot tell: then the cases' traffic checks poll instead."""
        if self.programmed == "conditions":
            wait_programmed(self.cluster, namespace.name, resource, name)


def handle(participant: Participant) -> apps.App:
    """An app handle for a participant; local workloads are taken as they are (end-to-end
    tests pass them directly)."""
    if isinstance(participant, workloads.LocalWorkload):
        return apps.LocalApp(participant)
    return participant


# What a stage does, also usable without one (end-to-end tests build their own namespaces).


def call(
    source: Participant,
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
    body = handle(source).request("POST", "/call", body=order, timeout=120)
    return Tally(body["ok"], body["failed"], body["codes"])


def received(target: Participant, caller: Participant) -> int:
    """How many requests `target`'s app has received from `caller`'s app."""
    metrics = handle(target).request("GET", "/metrics", timeout=10)
    return int(metrics["received"].get(handle(caller).caller, 0))


def wait_programmed(
    cluster: clusters.Cluster, namespace: str, resource: str, name: str, *, timeout: float = 30.0
) -> None:
    """Until the object's Programmed condition is True for its current generation."""
    read = ""

    def programmed() -> bool:
        nonlocal read
        result = cluster.kubectl("-n", namespace, "get", resource, name, "-o", "json")
        if result.returncode != 0:
            return False
        read = result.stdout
        raw = json.loads(read)
        generation = raw["metadata"].get("generation")
        return any(
            condition["type"] == "Programmed"
            and condition["status"] == "True"
            and condition.get("observedGeneration") == generation
            for condition in (raw.get("status") or {}).get("conditions") or []
        )

    waiting.eventually_sync(
        programmed,
        timeout=timeout,
        message=lambda: f"{resource} {name} not Programmed in {timeout:.0f}s: {read[-500:]}",
        interval=0.2,
        error=CaseFailedError,
    )
