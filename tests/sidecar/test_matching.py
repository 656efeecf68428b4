"""Compiled HTTP matches (`smimesh.sidecar.matching`) keep SMI's semantics: a path regex is
anchored at the start only, header values must match whole, conditions inside one match AND,
separate matches OR, and `*` allows every method."""

from __future__ import annotations

import pytest

from smimesh.proxyconfig import matches
from smimesh.sidecar import matching

pytestmark = pytest.mark.fast


def facts(method: str = "GET", path: str = "/", **headers: str) -> matching.RequestFacts:
    return matching.RequestFacts(method, path, headers)


def test_a_path_regex_is_anchored_at_the_start_only() -> None:
    match = matching.compile_match(matches.HttpMatch(path_regex="/api"))
    assert match.matches(facts(path="/api/v1/items"))
    assert not match.matches(facts(path="/v1/api"))


def test_a_header_value_must_match_whole() -> None:
    match = matching.compile_match(matches.HttpMatch(headers=(("x-user", "a.*"),)))
    assert match.matches(facts(**{"x-user": "alice"}))
    assert not match.matches(facts(**{"x-user": "bob-alice"}))
    assert not match.matches(facts())


def test_conditions_of_one_match_are_anded() -> None:
    match = matching.compile_match(
        matches.HttpMatch(path_regex="/api", methods=("POST",), headers=(("x-env", "canary"),))
    )
    assert match.matches(facts("POST", "/api", **{"x-env": "canary"}))
    assert not match.matches(facts("GET", "/api", **{"x-env": "canary"}))
    assert not match.matches(facts("POST", "/web", **{"x-env": "canary"}))
    assert not match.matches(facts("POST", "/api", **{"x-env": "stable"}))


def test_separate_matches_are_ored_and_the_first_that_admits_is_named() -> None:
    compiled = matching.compile_all(
        (
            matches.HttpMatch(name="reads", methods=("GET",)),
            matches.HttpMatch(name="api", path_regex="/api"),
        )
    )
    found = matching.first_match(compiled, facts("DELETE", "/api/x"))
    assert found is not None
    assert found.name == "api"
    assert matching.first_match(compiled, facts("DELETE", "/web")) is None


def test_a_star_or_no_method_allows_every_method() -> None:
    for methods in (("*",), ()):
        match = matching.compile_match(matches.HttpMatch(methods=methods))
        assert match.methods is None
        assert match.matches(facts("PATCH"))
