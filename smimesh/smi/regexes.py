"""Checks SMI regular expressions (`pathRegex`, header values) the way the field runs them.

Proxies in the field (Envoy, linkerd2-proxy, Traefik, Go controllers) use RE2 syntax, so each
pattern is compiled with RE2 under a memory cap: linear-time matching, no catastrophic
backtracking, bounded programs. Perl-only constructs get a clear reason before RE2 sees them.
Used by `validating`; the sidecar matches with the same engine.
"""

from __future__ import annotations

import re2

__all__ = ["MAX_LENGTH", "MAX_PROGRAM_BYTES", "check"]

MAX_LENGTH = 1024
MAX_PROGRAM_BYTES = 1 << 20

_UNSUPPORTED_GROUPS = {
    "(?=": "lookahead (?=...) is not supported by RE2, the regex syntax proxies use",
    "(?!": "negative lookahead (?!...) is not supported by RE2, the regex syntax proxies use",
    "(?<=": "lookbehind (?<=...) is not supported by RE2, the regex syntax proxies use",
    "(?<!": "negative lookbehind (?<!...) is not supported by RE2, the regex syntax proxies use",
    "(?>": "atomic groups (?>...) are not supported by RE2, the regex syntax proxies use",
    "(?P=": "backreferences (?P=name) are not supported by RE2, the regex syntax proxies use",
    "(?(": "conditionals (?(...)...) are not supported by RE2, the regex syntax proxies use",
}


def _perl_only(pattern: str) -> str | None:
    """A reason if the pattern uses a backtracking-only construct (outside character classes)."""
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            follower = pattern[index + 1]
            if not in_class and (follower in "123456789" or follower == "k"):
                return (
                    f"backreference \\{follower} at offset {index} is not supported by RE2, "
                    "the regex syntax proxies use"
                )
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern.startswith("[]", index) or pattern.startswith("[^]", index):
                index += 2
        elif char == "(":
            for opener, reason in _UNSUPPORTED_GROUPS.items():
                if pattern.startswith(opener, index):
                    return f"{reason} (offset {index})"
        elif char in "*+?}" and index + 1 < len(pattern) and pattern[index + 1] == "+":
            return f"possessive quantifier at offset {index} is not supported by RE2"
        index += 1
    return None


def check(pattern: str) -> str | None:
    """None if `pattern` is a safe RE2 regex, else the reason it is not."""
    if len(pattern) > MAX_LENGTH:
        return f"regex is longer than {MAX_LENGTH} characters"
    if "\x00" in pattern:
        return "regex contains a NUL character"
    reason = _perl_only(pattern)
    if reason is not None:
        return reason
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PROGRAM_BYTES
    try:
        re2.compile(pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        if "too large" in text:
            return "regex compiles to a program too large to run safely (simplify repetitions)"
        return f"invalid regex: {text}"
    return None
