"""The route stage (`smimesh.sidecar.routes`): the first TrafficSplit whose matches admit the
request picks a backend by weight (a zero weight never wins, all-zero weights route nowhere);
without one the root Service takes it; TCP connections take only splits without matches."""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest

from smimesh.proxyconfig import matches, outbound
from smimesh.sidecar import clusters, matching, routes, settings, tables
from tests.sidecar.conftest import NS, config, service, split

pytestmark = pytest.mark.fast

API = matches.HttpMatch(name="api", path_regex="/api")


def logical(*splits: outbound.SplitRoute) -> routes.Logical:
    backends = {b.service.name for route in splits for b in route.backends}
    table = tables.build(
        config(
            outbound_services=(
                service("web", [("10.0.0.1", 80, "web-1")], routes=splits),
                *(service(name, [("10.0.1.1", 80, name)]) for name in sorted(backends - {"gone"})),
            )
        ),
        clusters.Registry(settings.Limits(), settings.Outliers()),
        settings.SidecarSettings(),
    )
    return table.by_service[(f"{NS}/web", 80)]


def request(path: str) -> Callable[[], matching.RequestFacts]:
    return lambda: matching.RequestFacts("GET", path, {})


def test_weights_share_the_requests_and_a_zero_weight_never_wins() -> None:
    target = logical(split("web", {"v0": 0, "v1": 75, "v2": 25, "v3": 0}))
    picks = collections.Counter(
        routes.choose(target, None).cluster.service_name for _ in range(4000)
    )
    assert "v0" not in picks
    assert "v3" not in picks
    assert abs(picks["v1"] / 4000 - 0.75) < 0.04, picks  # sd 0.7 pp


def test_all_zero_weights_route_nowhere_and_say_so() -> None:
    target = logical(split("web", {"v1": 0, "v2": 0}))
    with pytest.raises(routes.NoRouteError, match="gives every backend weight 0"):
        routes.choose(target, None)


def test_a_backend_missing_from_the_snapshot_is_no_route() -> None:
    target = logical(split("web", {"gone": 1}))
    with pytest.raises(routes.NoRouteError, match=f"backend {NS}/gone of {NS}/web is not known"):
        routes.choose(target, None)


def test_a_split_with_matches_applies_only_to_requests_it_admits() -> None:
    target = logical(split("web", {"v2": 1}, only=(API,)))
    assert routes.choose(target, request("/api/items")) == routes.Concrete(
        target.splits[0].backends[0].cluster, f"{NS}/web"
    )
    assert routes.choose(target, request("/home")) == routes.Concrete(target.root, "")
    assert routes.choose(target, None) == routes.Concrete(target.root, "")  # TCP


def test_the_first_split_that_applies_wins() -> None:
    target = logical(split("canary", {"v2": 1}, only=(API,)), split("web", {"v1": 1}))
    assert routes.choose(target, request("/api")).cluster.service_name == "v2"
    assert routes.choose(target, request("/home")).cluster.service_name == "v1"


def test_request_facts_are_computed_only_when_a_split_has_matches() -> None:
    asked: list[str] = []

    def facts() -> matching.RequestFacts:
        asked.append("facts")
        return matching.RequestFacts("GET", "/", {})

    routes.choose(logical(split("web", {"v1": 1})), facts)
    assert asked == []
    routes.choose(logical(split("web", {"v1": 1}, only=(API,))), facts)
    assert asked == ["facts"]
