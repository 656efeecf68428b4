"""Request-target normalization (RFC 3986 section 6.2.2): the one path that authorization,
routing and the forwarded request all use, so that a rule admitting `/public` cannot be
passed by `/public/../admin`, `/public/%2e%2e/admin` or `http://host/admin`.

Pure; called through `http1.Request.normalize` (HTTP/1.1 request line) and
`http2.normalized` (`:path`) by the inbound and outbound handlers before `authorizing` and
`routes` look at the path; they answer `PathError` with 400 (`STATUS`).
The README's "Path normalization" section states this policy; keep the two in step.
"""

from __future__ import annotations

import re
from typing import NamedTuple

STATUS = 400

# RFC 3986 2.3: decoded when percent-encoded. Everything else stays encoded (hex upper-cased).
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SLASHES = re.compile(r"/{2,}")
_SCHEMES = ("http", "https")
# The fast path: bytes.translate deletes these; whatever is left needs work or a refusal.
_PATH_OK = bytes(b for b in range(256) if b > 0x20 and b != 0x7F and b not in b"#%\\")
_QUERY_OK = bytes(b for b in range(256) if b > 0x20 and b != 0x7F and b != ord("#"))


class PathError(ValueError):
    """A request target the sidecar refuses (answered with `STATUS`, 400): `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Target(NamedTuple):
    """A normalized request target: `path` (what matches see; `*` only for OPTIONS), the
    query as received (`""` or starting with `?`), and an absolute-form target's authority.
    (A NamedTuple: built per request, and cheaper to build than a frozen dataclass.)"""

    path: str
    query: str = ""
    authority: str | None = None

    @property
    def origin_form(self) -> bytes:
        """What is forwarded: the normalized path and the untouched query."""
        return (self.path + self.query).encode("latin-1")


def normalize(
    target: bytes | str, *, method: str = "GET", absolute: bool = True, merge_slashes: bool = False
) -> Target:
    """Normalize an origin-form target (`/path?query`), an absolute-form one
    (`http[s]://authority/path?query`, when `absolute`: HTTP/1.1 but not HTTP/2's `:path`)
    or `*` (OPTIONS only). Raises `PathError` for anything else."""
    if isinstance(target, str):
        try:
            target = target.encode("latin-1")
        except UnicodeEncodeError:
            raise PathError("a character beyond one byte in the request target") from None
    authority = None
    if target[:1] != b"/":
        if target == b"*":
            if method != "OPTIONS":
                raise PathError("the target * is for OPTIONS only")
            return Target("*")
        if not absolute:
            raise PathError("the path must start with /")
        authority, target = _absolute(target.decode("latin-1"))
    path, mark, query = target.partition(b"?")
    if mark and query.translate(None, _QUERY_OK):
        raise PathError("control character or fragment in the query")
    text = path.decode("latin-1")
    if b"/." in path or path.translate(None, _PATH_OK) or (merge_slashes and b"//" in path):
        text = _normalize_path(text, merge_slashes=merge_slashes)
    return Target(text, (mark + query).decode("latin-1") if mark else "", authority)


def _absolute(text: str) -> tuple[str, bytes]:
    """(authority, origin-form rest) of an absolute-form target."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise PathError("the target is neither origin-form (/path) nor absolute-form http(s)")
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority, rest = rest[:end], rest[end:]
    if not authority or "@" in authority or _CONTROL.search(authority) is not None:
        raise PathError("the absolute-form target has no usable authority")
    if not rest.startswith("/"):
        rest = "/" + rest
    return authority, rest.encode("latin-1")


def _normalize_path(path: str, *, merge_slashes: bool) -> str:
    if _CONTROL.search(path) is not None:
        raise PathError("control character in the path")
    if "\\" in path:
        raise PathError("backslash in the path")
    if "#" in path:
        raise PathError("fragment in the request target")
    if "%" in path:
        path = _decode(path)
    if merge_slashes and "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        path = remove_dot_segments(path)
    return path


def _decode(path: str) -> str:
    """Decode percent-encoded unreserved characters, upper-case the hex of the rest; refuse
    an encoded slash, backslash or NUL and malformed escapes."""
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise PathError("malformed percent-encoding in the path")
        code = int(part[:2], 16)
        char = chr(code)
        if char in UNRESERVED:
            out.append(char)
        elif code == 0x2F:
            raise PathError("encoded slash (%2F) in the path")
        elif code == 0x5C:
            raise PathError("encoded backslash (%5C) in the path")
        elif code == 0:
            raise PathError("encoded NUL (%00) in the path")
        else:
            out.append("%" + part[:2].upper())
        out.append(part[2:])
    return "".join(out)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path: `.` segments go, `..` removes the segment before
    it (never above the root); a path ending in a dot segment keeps a trailing slash. A dot
    segment carrying `;` parameters (`..;x`, which Tomcat and Jetty read as `..`) is refused."""
    segments = path[1:].split("/")
    last = len(segments) - 1
    out: list[str] = []
    for index, segment in enumerate(segments):
        if segment == ".":
            if index == last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if index == last:
                out.append("")
        else:
            if segment.startswith(".") and segment.partition(";")[0] in (".", ".."):
                raise PathError("dot segment with parameters in the path")
            out.append(segment)
    return "/" + "/".join(out)
