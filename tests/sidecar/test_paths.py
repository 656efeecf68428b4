"""The request-target normalizer (`smimesh.sidecar.paths`): RFC 3986 dot-segment removal
(the merged paths of the 5.4 examples), unreserved decoding, the attack strings of issue 18,
what is refused, the merge-slashes option and the query kept as received."""

from __future__ import annotations

import time

import pytest

from smimesh.sidecar import paths

pytestmark = pytest.mark.fast

# RFC 3986 5.4.1 and 5.4.2: base `http://a/b/c/d;p?q`; each relative reference merged with
# the base path (5.2.3) gives the input on the left, 5.2.4 must give the path on the right.
RFC_5_4 = [
    ("/b/c/g", "/b/c/g"),
    ("/b/c/./g", "/b/c/g"),
    ("/b/c/g/", "/b/c/g/"),
    ("/b/c/;x", "/b/c/;x"),
    ("/b/c/g;x", "/b/c/g;x"),
    ("/b/c/.", "/b/c/"),
    ("/b/c/./", "/b/c/"),
    ("/b/c/..", "/b/"),
    ("/b/c/../", "/b/"),
    ("/b/c/../g", "/b/g"),
    ("/b/c/../..", "/"),
    ("/b/c/../../", "/"),
    ("/b/c/../../g", "/g"),
    ("/b/c/../../../g", "/g"),
    ("/b/c/../../../../g", "/g"),
    ("/./g", "/g"),
    ("/../g", "/g"),
    ("/b/c/g.", "/b/c/g."),
    ("/b/c/.g", "/b/c/.g"),
    ("/b/c/g..", "/b/c/g.."),
    ("/b/c/..g", "/b/c/..g"),
    ("/b/c/./../g", "/b/g"),
    ("/b/c/./g/.", "/b/c/g/"),
    ("/b/c/g/./h", "/b/c/g/h"),
    ("/b/c/g/../h", "/b/c/h"),
    ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
    ("/b/c/g;x=1/../y", "/b/c/y"),
]


@pytest.mark.parametrize(("merged", "expected"), RFC_5_4)
def test_dot_segments_are_removed_as_rfc_3986_section_5_4_resolves_them(
    merged: str, expected: str
) -> None:
    assert paths.normalize(merged).path == expected
    assert paths.remove_dot_segments(merged) == expected


ATTACKS_TO_ADMIN = [
    "/public/../admin",
    "/public/./../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/%2e./admin",
    "/public/x/../../admin",
    "http://host/admin",
    "HTTP://host/public/../admin",
    "https://host:8443/admin",
]


@pytest.mark.parametrize("target", ATTACKS_TO_ADMIN)
def test_attack_targets_normalize_to_the_path_the_app_would_see(target: str) -> None:
    normal = paths.normalize(target)
    assert normal.path == "/admin"
    assert not normal.path.startswith("/public")
    assert normal.origin_form == b"/admin"


REFUSED = [
    ("/public%2f..%2fadmin", "encoded slash"),
    ("/public%2F..%2Fadmin", "encoded slash"),
    ("/public/%2e%2e%2fadmin", "encoded slash"),
    ("/public\\..\\admin", "backslash"),
    ("/public/..\\admin", "backslash"),
    ("/public%5c..%5cadmin", "encoded backslash"),
    ("/public%5C..%5Cadmin", "encoded backslash"),
    ("/public%00/x", "encoded NUL"),
    ("/public\x00/x", "control character"),
    ("/public\x7f", "control character"),
    ("/public\r\n/x", "control character"),
    ("/public x", "control character"),
    ("/public/%zz", "malformed percent-encoding"),
    ("/public/%2", "malformed percent-encoding"),
    ("/public/%", "malformed percent-encoding"),
    ("/public/%+1", "malformed percent-encoding"),
    ("/public#frag", "fragment"),
    ("/public/..;/admin", "dot segment with parameters"),
    ("/public/.;x/admin", "dot segment with parameters"),
    ("admin", "neither origin-form"),
    ("../admin", "neither origin-form"),
    ("ftp://host/admin", "neither origin-form"),
    ("file:///etc/passwd", "neither origin-form"),
    ("http:///admin", "no usable authority"),
    ("http://user@host/admin", "no usable authority"),
    ("", "neither origin-form"),
    ("*", "OPTIONS only"),
    ("/x?a=1#frag", "fragment in the query"),
]


@pytest.mark.parametrize(("target", "why"), REFUSED)
def test_refused_targets_raise_the_typed_error_with_a_reason(target: str, why: str) -> None:
    with pytest.raises(paths.PathError) as refused:
        paths.normalize(target)
    assert why in refused.value.reason
    assert paths.STATUS == 400


def test_unreserved_characters_are_decoded_and_other_escapes_get_upper_case_hex() -> None:
    assert paths.normalize("/%7Euser/%61%62c/%2D%2e%5F").path == "/~user/abc/-._"
    assert paths.normalize("/a%3ab/%c3%a9/%20x/%252e").path == "/a%3Ab/%C3%A9/%20x/%252e"
    # Decoding happens once: `%252e` is the text `%2e`, not a dot.
    assert paths.normalize("/public/%252e%252e/admin").path == "/public/%252e%252e/admin"


def test_star_is_accepted_for_options_only() -> None:
    assert paths.normalize("*", method="OPTIONS") == paths.Target("*")
    assert paths.normalize(b"*", method="OPTIONS").origin_form == b"*"


def test_absolute_form_gives_its_authority_and_is_refused_where_only_a_path_may_come() -> None:
    target = paths.normalize(b"http://api.shop:8080/a/../b?x=1")
    assert target == paths.Target("/b", "?x=1", "api.shop:8080")
    assert paths.normalize("http://api.shop").path == "/"
    assert paths.normalize("http://api.shop?x").origin_form == b"/?x"
    with pytest.raises(paths.PathError):
        paths.normalize("http://api.shop/admin", absolute=False)  # HTTP/2 :path


def test_slashes_are_kept_unless_merging_is_asked_for() -> None:
    assert paths.normalize("//public///x//").path == "//public///x//"
    assert paths.normalize("//public///x//", merge_slashes=True).path == "/public/x/"
    # merged before dot segments, as nginx does: `//..` climbs one real segment
    assert paths.normalize("/public/a//../b").path == "/public/a/b"
    assert paths.normalize("/public/a//../b", merge_slashes=True).path == "/public/b"


def test_the_query_is_kept_as_received_and_never_matched() -> None:
    target = paths.normalize(b"/public/./x/..?next=/../admin&q=%2f%2E%2e")
    assert target.path == "/public/"
    assert target.query == "?next=/../admin&q=%2f%2E%2e"
    assert target.origin_form == b"/public/?next=/../admin&q=%2f%2E%2e"


def test_a_clean_target_comes_back_unchanged() -> None:
    for clean in ("/", "/api/items/42", "/a-b_c~d/e.f", "/x;y=1", "/api?x=1&y=%2F"):
        target = paths.normalize(clean.encode())
        assert target.origin_form == clean.encode()
    assert paths.normalize("/caf\xc3\xa9").origin_form == "/caf\xc3\xa9".encode("latin-1")


@pytest.mark.parametrize("piece", ["/%2e%2e", "/.", "/a", "%41", "//"])
def test_a_target_as_big_as_the_head_limit_is_normalized_in_linear_time(piece: str) -> None:
    # 64 KiB (settings.Limits.max_header_bytes): about 20 ms here; 500 ms leaves room for a
    # loaded machine while a quadratic algorithm (seconds) would still fail.
    target = "/" + piece * (64 * 1024 // len(piece))
    started = time.perf_counter()
    normal = paths.normalize(target, merge_slashes=True)
    assert time.perf_counter() - started < 0.5
    assert len(normal.path) <= len(target)
