"""pathRegex and header regexes are checked as RE2 (what proxies run), with clear reasons."""

from __future__ import annotations

import time

import pytest

from smimesh.smi import regexes

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    "pattern", ["/", "/api/.*", ".*a-book.*new", "/v[0-9]+/", r"\d+", "(a+)+$"]
)
def test_re2_patterns_pass(pattern: str) -> None:
    assert regexes.check(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreference"),
        ("(?=a)", "lookahead"),
        ("(?<!a)b", "lookbehind"),
        ("(?P<x>a)(?P=x)", "backreference"),
        ("(?>a)", "atomic"),
        ("a++", "possessive"),
        ("[a-z", "missing ]"),
        ("a{1001}", "repetition"),
        ("x" * 2000, "longer than"),
    ],
)
def test_unsupported_or_broken_patterns_name_the_reason(pattern: str, reason: str) -> None:
    found = regexes.check(pattern)
    assert found is not None
    assert reason in found


def test_huge_programs_are_refused_quickly() -> None:
    started = time.monotonic()
    found = regexes.check("((((a{50}){20}){20}){20})")
    assert found is not None
    assert time.monotonic() - started < 2
