"""Inbound authorization (`smimesh.sidecar.authorizing`): deny by default, a permissive port
admits everyone, a rule must name the caller's identity and one of its matches must admit the
request; a rule without matches admits everything of its caller. No sockets: the policy comes
from `tables.build`."""

from __future__ import annotations

import pytest

from smimesh.proxyconfig import inbound, matches
from smimesh.sidecar import authorizing, clusters, matching, settings, tables
from tests.sidecar.conftest import config, spiffe

pytestmark = pytest.mark.fast

WEB = spiffe("shop", "web")
ADMIN = spiffe("shop", "admin")


def policy(*rules: inbound.InboundRule, permissive: bool = False) -> tables.InboundPolicy:
    port = inbound.InboundPort(
        port=8080, app_port=80, protocol="http", permissive=permissive, rules=rules
    )
    registry = clusters.Registry(settings.Limits(), settings.Outliers())
    table = tables.build(config(inbound_ports=(port,)), registry, settings.SidecarSettings())
    return table.inbound[8080]


def get(path: str, method: str = "GET") -> matching.RequestFacts:
    return matching.RequestFacts(method, path, {})


READS = inbound.InboundRule(
    target="shop/reads",
    sources=(WEB,),
    http_matches=(matches.HttpMatch(name="items", path_regex="/items", methods=("GET",)),),
)


def test_a_permissive_port_admits_anyone_even_without_a_certificate() -> None:
    decision = authorizing.authorize(policy(permissive=True), None, get("/"))
    assert decision == authorizing.Decision(True, "permissive")


def test_without_a_verified_identity_a_strict_port_denies() -> None:
    decision = authorizing.authorize(policy(READS), None, get("/items"))
    assert not decision.allowed
    assert "mTLS" in decision.reason


def test_a_caller_no_rule_names_is_denied_with_its_identity_and_port() -> None:
    decision = authorizing.authorize(policy(READS), ADMIN, get("/items"))
    assert decision == authorizing.Decision(False, f"no TrafficTarget allows {ADMIN} on port 8080")


def test_a_named_caller_gets_only_what_a_match_admits() -> None:
    allowed = authorizing.authorize(policy(READS), WEB, get("/items/1"))
    assert allowed == authorizing.Decision(True, "shop/reads (items)")
    denied = authorizing.authorize(policy(READS), WEB, get("/items/1", "DELETE"))
    assert not denied.allowed
    assert "DELETE /items/1" in denied.reason


def test_rules_are_additive_and_one_without_matches_admits_all_of_its_caller() -> None:
    everything = inbound.InboundRule(target="shop/all", sources=(ADMIN,))
    rules = policy(READS, everything)
    assert authorizing.authorize(rules, ADMIN, get("/anything", "DELETE")).allowed
    assert not authorizing.authorize(rules, WEB, get("/anything")).allowed


def test_a_tcp_connection_is_admitted_by_identity_alone() -> None:
    assert authorizing.authorize(policy(READS), WEB, None) == authorizing.Decision(
        True, "shop/reads"
    )
    assert not authorizing.authorize(policy(READS), ADMIN, None).allowed
