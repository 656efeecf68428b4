"""Traffic specs cases (specs.smi-spec.io HTTPRouteGroup): paths anchored at the start,
methods, headers in both formats. Registered into `registry.CASES`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from smimesh.conformance import objects, stages
from smimesh.conformance.cases.registry import case


def _allow_routes(stage: stages.Stage, matches: Sequence[Mapping[str, Any]]) -> None:
    space = stage.strict
    stage.apply(
        space,
        objects.route_group("routes", matches),
        objects.target(
            "allow-routes",
            destination="service-b",
            sources=[(space.name, "service-a")],
            rules=[{"kind": "HTTPRouteGroup", "name": "routes"}],
            namespace=space.name,
        ),
    )


@case(
    "specs/path-only",
    spec="specs.smi-spec.io/v1alpha4 pathRegex",
    description="a route of path /metrics admits /metrics and refuses /echo",
    origin="smi-conformance",
)
def path_only(stage: stages.Stage) -> None:
    space = stage.strict
    a = space.apps["a"]
    _allow_routes(stage, [{"name": "metrics", "pathRegex": "/metrics", "methods": ["*"]}])
    stage.eventually(a, space.url("b", "/metrics"), expect_ok=True)
    stage.eventually(a, space.url("b", "/echo"), expect_ok=False)


@case(
    "specs/get-only",
    spec="specs.smi-spec.io/v1alpha4 methods",
    description="a route of method GET admits GET and refuses POST",
    origin="smi-conformance",
)
def get_only(stage: stages.Stage) -> None:
    space = stage.strict
    a = space.apps["a"]
    _allow_routes(stage, [{"name": "reads", "pathRegex": "/", "methods": ["GET"]}])
    stage.eventually(a, space.url("b"), expect_ok=True)
    stage.eventually(a, space.url("b"), expect_ok=False, method="POST")


@case(
    "specs/header-match",
    spec="specs.smi-spec.io/v1alpha4 headers (list of one-key maps)",
    description="a route requiring header x-canary: yes admits only requests that carry it",
)
def header_match(stage: stages.Stage) -> None:
    space = stage.strict
    a = space.apps["a"]
    _allow_routes(stage, [{"name": "canary", "pathRegex": "/", "headers": [{"x-canary": "yes"}]}])
    stage.eventually(a, space.url("b"), expect_ok=True, headers={"x-canary": "yes"})
    stage.eventually(a, space.url("b"), expect_ok=False)
