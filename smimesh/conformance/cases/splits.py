"""Traffic split cases (split.smi-spec.io): weighted shares over enough requests, every
version, `matches`, weights changing under traffic (Flagger's and Argo Rollouts' sequences),
a root that is its own backend, two splits on one root. Registered into `registry.CASES`.

Shares are measured by the backends' own counts of requests from caller `a` in the
permissive namespace, where the root Service `backend` selects both `b` and `c`.
Tolerance: 400 requests per measurement and +/-0.10 absolute on a share (4 standard
deviations of the binomial at p=0.5, the widest case); a 0 weight must get exactly 0.
On a mesh without our status conditions (`stage.programmed == "traffic"`) nothing says when
a split took effect, so `expect_measured` measures again until the shares hold or
`SETTLE_SECONDS` pass. Every case here needs the permissive namespace, so skips without one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from smimesh._aio import waiting
from smimesh.conformance import objects, stages
from smimesh.conformance.cases.registry import case, expect

REQUESTS = 400
TOLERANCE = 0.10
RESOURCE = "trafficsplits.split.smi-spec.io"
SETTLE_SECONDS = 30.0


def measure(
    stage: stages.Stage,
    *,
    requests: int = REQUESTS,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 8,
) -> dict[str, float]:
    """Send `requests` from a to the root; the share each of b and c received."""
    stage.need_permissive()
    space = stage.open
    backends = {"b": space.apps["b"], "c": space.apps["c"]}
    return shares(
        space.apps["a"],
        space.url("backend"),
        backends,
        requests=requests,
        headers=headers,
        concurrency=concurrency,
    )


def shares(
    caller: stages.Participant,
    url: str,
    backends: Mapping[str, stages.Participant],
    *,
    requests: int = REQUESTS,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 8,
) -> dict[str, float]:
    """`caller` sends `requests` to `url`; the share each named backend workload received.
    Every request must succeed and land on one of `backends`."""
    before = {name: stages.received(app, caller) for name, app in backends.items()}
    tally = stages.call(caller, url, count=requests, headers=headers, concurrency=concurrency)
    expect(tally.failed == 0, f"{tally.failed} of {requests} requests failed: {dict(tally.codes)}")
    got = {name: stages.received(app, caller) - before[name] for name, app in backends.items()}
    expect(sum(got.values()) == requests, f"{requests} sent, backends counted {got}")
    return {name: count / requests for name, count in got.items()}


def expect_shares(shares: Mapping[str, float], wanted: Mapping[str, float]) -> None:
    for name, share in wanted.items():
        seen = shares[name]
        if share == 0.0:
            expect(seen == 0.0, f"{name} has weight 0 but got {seen:.3f} of the traffic")
        else:
            expect(
                abs(seen - share) <= TOLERANCE,
                f"{name} got {seen:.3f} of the traffic, expected {share:.2f} +/- {TOLERANCE}",
            )


def expect_measured(
    stage: stages.Stage,
    wanted: Mapping[str, float],
    *,
    requests: int = REQUESTS,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 8,
) -> None:
    """`expect_shares(measure(...), wanted)`; on a mesh that only traffic can tell has
    programmed a change, measured again until it holds or `SETTLE_SECONDS` pass."""
    settle = SETTLE_SECONDS if stage.programmed == "traffic" else 0.0

    def shares_hold() -> bool:
        expect_shares(
            measure(stage, requests=requests, headers=headers, concurrency=concurrency), wanted
        )
        return True

    waiting.eventually_sync(
        shares_hold,
        timeout=settle,
        message=f"the traffic did not split as {dict(wanted)} within {settle:.0f}s",
        interval=1.0,
        ignoring=(stages.CaseFailedError,),
        error=stages.CaseFailedError,
    )


def apply_split(stage: stages.Stage, split: objects.Object) -> None:
    stage.need_permissive()
    stage.apply(stage.open, split)
    stage.wait_programmed(stage.open, RESOURCE, split["metadata"]["name"])


def _weights_case(b: int, c: int) -> None:
    @case(
        f"split/weights-{b}-{c}",
        spec="split.smi-spec.io/v1alpha4",
        description=f"weights {b}/{c} between two backends of one root give that share",
        origin="smi-conformance",
    )
    def run(stage: stages.Stage) -> None:
        apply_split(stage, objects.split("weights", "backend", {"b": b, "c": c}))
        expect_measured(stage, {"b": b / (b + c), "c": c / (b + c)})


for _b, _c in ((100, 0), (0, 100), (75, 25), (25, 75)):
    _weights_case(_b, _c)


def _version_case(
    version: str, weights: Mapping[str, int | str], shares: Mapping[str, float]
) -> None:
    @case(
        f"split/version-{version}",
        spec=f"split.smi-spec.io/{version}",
        description=f"a {version} TrafficSplit (as its producers write it) routes by weight",
    )
    def run(stage: stages.Stage) -> None:
        apply_split(stage, objects.split("versioned", "backend", weights, version=version))
        expect_measured(stage, shares)


_version_case("v1alpha1", {"b": "250m", "c": "750m"}, {"b": 0.25, "c": 0.75})
_version_case("v1alpha2", {"b": 75, "c": 25}, {"b": 0.75, "c": 0.25})
_version_case("v1alpha3", {"b": 25, "c": 75}, {"b": 0.25, "c": 0.75})
_version_case("v1alpha4", {"b": 50, "c": 50}, {"b": 0.5, "c": 0.5})


@case(
    "split/matches-route-only-matching-requests",
    spec="split.smi-spec.io/v1alpha4 matches",
    description="a split with matches applies to matching requests; others go to the root",
)
def matches(stage: stages.Stage) -> None:
    stage.apply(
        stage.open,
        objects.route_group(
            "canary-header", [{"name": "canary", "headers": [{"x-canary": "yes"}]}]
        ),
    )
    apply_split(
        stage, objects.split("by-header", "backend", {"b": 0, "c": 100}, matches=["canary-header"])
    )
    expect_measured(stage, {"b": 0.0, "c": 1.0}, requests=200, headers={"x-canary": "yes"})
    unsplit = measure(stage, requests=REQUESTS)
    expect(unsplit["b"] > 0.3, f"requests without the header must reach the root's pods: {unsplit}")


@case(
    "split/flagger-progressive-canary",
    spec="split.smi-spec.io/v1alpha4 (Flagger osm: patch weights step by step)",
    description="0/100 -> 5/95 -> ... -> 50/50 -> promotion 0/100, no request fails in between",
)
def flagger(stage: stages.Stage) -> None:
    for canary in (0, 5, 10, 20, 30, 40, 50):
        apply_split(stage, objects.split("podinfo", "backend", {"c": canary, "b": 100 - canary}))
        expect_measured(stage, {"c": canary / 100, "b": 1 - canary / 100})
    apply_split(stage, objects.split("podinfo", "backend", {"c": 0, "b": 100}))
    expect_measured(stage, {"c": 0.0, "b": 1.0})


@case(
    "split/argo-rollouts-v1alpha1-steps",
    spec="split.smi-spec.io/v1alpha1 (Argo Rollouts: merge patch on spec.backends)",
    description="Argo's default v1alpha1 split, stepped 10 -> 50 -> 100 by merge patches",
)
def argo(stage: stages.Stage) -> None:
    space = stage.open
    apply_split(stage, objects.split("rollout", "backend", {"c": 0, "b": 100}, version="v1alpha1"))
    for canary in (10, 50, 100):
        patch = {
            "spec": {
                "backends": [
                    {"service": "c", "weight": canary},
                    {"service": "b", "weight": 100 - canary},
                ]
            }
        }
        result = stage.cluster.kubectl(
            "-n",
            space.name,
            "patch",
            "trafficsplits.v1alpha1.split.smi-spec.io",
            "rollout",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        expect(result.returncode == 0, f"Argo's merge patch failed: {result.stderr.strip()}")
        stage.wait_programmed(space, RESOURCE, "rollout")
        expect_measured(stage, {"c": canary / 100, "b": 1 - canary / 100})


@case(
    "split/root-is-a-backend",
    spec="split.smi-spec.io/v1alpha4",
    description="a backend that is the root itself is resolved to the root's own pods",
)
def root_backend(stage: stages.Stage) -> None:
    # backend (root, selecting b and c) 50 + c 50: b gets 25 %, c 75 %. Sequential requests:
    # with several in flight, the load balancer rightly prefers the less busy pod of the
    # root's two, and the per-pod share stops being a function of the weights alone.
    apply_split(stage, objects.split("self", "backend", {"backend": 50, "c": 50}))
    expect_measured(stage, {"b": 0.25, "c": 0.75}, concurrency=1)


@case(
    "split/two-splits-one-root",
    spec="split.smi-spec.io/v1alpha4",
    description="of two splits on one root the oldest wins; the other reports Accepted=False",
)
def two_splits(stage: stages.Stage) -> None:
    stage.need_conditions()
    space = stage.open
    apply_split(stage, objects.split("first", "backend", {"b": 100, "c": 0}))
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    stage.apply(space, objects.split("second", "backend", {"b": 0, "c": 100}))
    conditions: dict[str, Any] = {}

    def refused() -> dict[str, Any] | None:
        nonlocal conditions
        raw = json.loads(
            stage.cluster.kubectl("-n", space.name, "get", RESOURCE, "second", "-o", "json").stdout
        )
        conditions = {c["type"]: c for c in (raw.get("status") or {}).get("conditions") or []}
        accepted: dict[str, Any] = conditions.get("Accepted", {})
        return accepted if accepted.get("status") == "False" else None

    accepted = waiting.eventually_sync(
        refused,
        timeout=20,
        message=lambda: f"the second split was never refused: {conditions}",
        interval=0.2,
        error=stages.CaseFailedError,
    )
    expect(accepted.get("reason") == "Conflict", f"unexpected reason: {accepted}")
    expect_measured(stage, {"b": 1.0, "c": 0.0}, requests=200)
