"""Fuzzing of the request-target normalizer (`make fuzz`; not collected by `make test`).

Targets built from the pieces path tricks are made of (dots, escapes, slashes, backslashes,
`;`, `?`, `#`, absolute-form prefixes, control characters) and random text go through
`paths.normalize`: it raises nothing but `PathError`, never hangs (hypothesis deadline), is
idempotent, never yields a dot segment or an encoded slash, and a start-anchored prefix rule
that admits the normalized path admits what the app makes of it (fully decoded, dots resolved).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from smimesh.proxyconfig import matches
from smimesh.sidecar import matching, paths
from tests import fuzzing

PIECES = [
    "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "%", "%4", "%41",
    "%7e", "%7E", "%00", "%25", "%252e", "?", "#", ";", ";x", "public", "admin", "a", "~",
    "\x00", "\x7f", " ", "\t", "\xe9", "http://", "HTTPS://", "h", "@", ":80", "*",
]  # fmt: skip
PREFIXES = ["/public", "/public/", "/api/v1", "/a", "/", "/%41"]

targets = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=24).map("".join),
    st.lists(st.sampled_from(PIECES), max_size=12).map(lambda p: "/" + "".join(p)),
    st.text(max_size=64),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)
_DOT_SEGMENT = re.compile(r"(^|/)\.\.?(/|$)")


def _app_view(path: str) -> bytes:
    """What a lenient app makes of a forwarded path: every escape decoded, dots resolved."""
    decoded = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    return paths.remove_dot_segments(decoded).encode("latin-1")


def _check(target: str, method: str, merge: bool, absolute: bool, prefix: str) -> None:
    try:
        normal = paths.normalize(target, method=method, merge_slashes=merge, absolute=absolute)
    except paths.PathError as refused:
        reason = refused.reason
        assert reason
        return
    path = normal.path
    if path == "*":
        assert method == "OPTIONS"
        return
    assert path.startswith("/")
    assert _DOT_SEGMENT.search(path) is None, path
    lowered = path.lower()
    assert "%2f" not in lowered, path
    assert "%5c" not in lowered, path
    assert "\\" not in path, path
    if merge:
        assert "//" not in path, path
    again = paths.normalize(normal.origin_form, method=method, merge_slashes=merge)
    assert (again.path, again.query) == (normal.path, normal.query), (target, normal, again)
    rule = matching.compile_match(matches.HttpMatch(name="p", path_regex=re.escape(prefix)))
    if rule.matches(matching.RequestFacts(method, path, {})):
        assert path.startswith(prefix)
        literal = unquote_to_bytes(prefix.encode())
        assert _app_view(path).startswith(literal), (target, path)


@fuzzing.examples(2000, deadline=500)
@given(
    target=targets,
    method=st.sampled_from(["GET", "OPTIONS", "POST"]),
    merge=st.booleans(),
    absolute=st.booleans(),
    prefix=st.sampled_from(PREFIXES),
)
def fuzz_normalize(target: str, method: str, merge: bool, absolute: bool, prefix: str) -> None:
    _check(target, method, merge, absolute, prefix)


@fuzzing.examples(50, deadline=500)
@given(piece=st.sampled_from(PIECES), count=st.integers(1, 20_000))
def fuzz_long_targets_stay_linear(piece: str, count: int) -> None:
    _check("/" + piece * count, "GET", False, True, "/public")


def test_fuzz_path_normalizer() -> None:
    assert fuzzing.rounds_within_budget(fuzz_normalize, fuzz_long_targets_stay_linear) > 0
