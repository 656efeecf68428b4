"""Traffic access cases (access.smi-spec.io): deny by default, TrafficTargets admit exactly
the identities they name, removal closes the door again. Registered into `registry.CASES`."""

from __future__ import annotations

from smimesh.conformance import objects, stages
from smimesh.conformance.cases.registry import case, expect

ALL_PORTS = {"kind": "TCPRoute", "name": "all-ports"}


def _allow(stage: stages.Stage, *, sources: list[tuple[str, str]], name: str = "allow") -> None:
    space = stage.strict
    stage.apply(
        space,
        objects.tcp_route("all-ports"),
        objects.target(
            name, destination="service-b", sources=sources, rules=[ALL_PORTS], namespace=space.name
        ),
    )


@case(
    "access/no-target-blocks",
    spec="access.smi-spec.io/v1alpha3",
    description="without a TrafficTarget, a strict destination refuses every caller (403)",
    origin="smi-conformance",
)
def no_target_blocks(stage: stages.Stage) -> None:
    space = stage.strict
    a, b = space.apps["a"], space.apps["b"]
    tally = stage.call(a, space.url("b"))
    expect(tally.codes == {"403": 1}, f"expected one 403, got {dict(tally.codes)}")
    expect(stage.received(b, a) == 0, "b received a request it should never have seen")


@case(
    "access/tcproute-allows-exactly-once",
    spec="access.smi-spec.io/v1alpha3 + specs.smi-spec.io/v1alpha4 TCPRoute ports: []",
    description="a TrafficTarget a -> b with a TCPRoute of all ports admits a; b gets it once",
    origin="smi-conformance",
)
def tcproute_allows(stage: stages.Stage) -> None:
    space = stage.strict
    a, b = space.apps["a"], space.apps["b"]
    _allow(stage, sources=[(space.name, "service-a")])
    stage.eventually(a, space.url("b"), expect_ok=True)
    before = stage.received(b, a)
    tally = stage.call(a, space.url("b"))
    expect(tally.ok == 1, f"the allowed call failed: {dict(tally.codes)}")
    expect(stage.received(b, a) == before + 1, "b did not receive the call exactly once")


@case(
    "access/delete-blocks-again",
    spec="access.smi-spec.io/v1alpha3",
    description="deleting the TrafficTarget closes the door again",
    origin="smi-conformance",
)
def delete_blocks(stage: stages.Stage) -> None:
    space = stage.strict
    a = space.apps["a"]
    _allow(stage, sources=[(space.name, "service-a")])
    stage.eventually(a, space.url("b"), expect_ok=True)
    stage.delete(space, "traffictargets.access.smi-spec.io", "allow")
    stage.eventually(a, space.url("b"), expect_ok=False)


@case(
    "access/other-identity-denied",
    spec="access.smi-spec.io/v1alpha3 (mTLS identity)",
    description="a caller whose certificate names another ServiceAccount stays denied",
)
def other_identity(stage: stages.Stage) -> None:
    space = stage.strict
    a, b, c = space.apps["a"], space.apps["b"], space.apps["c"]
    _allow(stage, sources=[(space.name, "service-a")])
    stage.eventually(a, space.url("b"), expect_ok=True)
    tally = stage.call(c, space.url("b"))
    expect(tally.codes == {"403": 1}, f"c should be denied, got {dict(tally.codes)}")
    expect(stage.received(b, c) == 0, "b received c's request")


@case(
    "access/cross-namespace-source",
    spec="access.smi-spec.io/v1alpha3",
    description="a source ServiceAccount in another namespace is admitted when named",
)
def cross_namespace(stage: stages.Stage) -> None:
    space, other = stage.strict, stage.open
    caller = other.apps["a"]
    stage.eventually(caller, space.url("b"), expect_ok=False)
    _allow(stage, sources=[(other.name, "service-a")])
    stage.eventually(caller, space.url("b"), expect_ok=True)
    tally = stage.call(space.apps["a"], space.url("b"))
    expect(
        tally.codes == {"403": 1},
        "the same ServiceAccount name in the destination's "
        f"namespace must not be admitted: {dict(tally.codes)}",
    )


@case(
    "access/permissive-allows-all",
    spec="smimesh permissive mode",
    description="in a permissive namespace every caller is admitted without a TrafficTarget",
)
def permissive(stage: stages.Stage) -> None:
    stage.need_permissive()
    space = stage.open
    for name in ("a", "c"):
        tally = stage.call(space.apps[name], space.url("b"))
        expect(tally.ok == 1, f"{name} -> b failed in permissive mode: {dict(tally.codes)}")
