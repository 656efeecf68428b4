"""`deltas.merge` has the effect of applying its two deltas one after the other, so a proxy
that takes the merged one holds what it would hold after both; `from_message` refuses a
response it cannot read."""

from __future__ import annotations

import pytest

from smimesh.proxyconfig import deltas, resources, snapshots
from smimesh.proxyconfig import proxyconfig_pb2 as pb


def _settings(domain: str) -> resources.AnyResource:
    return resources.Resource.of(resources.SETTINGS, snapshots.MeshSettings(trust_domain=domain))


def _named(name: str, domain: str) -> resources.AnyResource:
    """Any body will do for merging: a settings body under another name."""
    held = _settings(domain)
    return resources.Resource(name, held.body, held.encoded, held.version)


HELD = {"a": _named("a", "one"), "b": _named("b", "one")}


@pytest.mark.fast
@pytest.mark.parametrize(
    ("older", "newer"),
    [
        (  # changed, then removed
            deltas.Delta("1", "v1", {"a": _named("a", "two")}),
            deltas.Delta("2", "v2", {}, removed=frozenset({"a"})),
        ),
        (  # removed, then added again
            deltas.Delta("1", "v1", {}, removed=frozenset({"b"})),
            deltas.Delta("2", "v2", {"b": _named("b", "three")}),
        ),
        (  # the whole scope, then a change
            deltas.Delta("1", "v1", {"a": _named("a", "four")}, full=True),
            deltas.Delta("2", "v2", {"c": _named("c", "five")}, removed=frozenset({"a"})),
        ),
        (  # a change, then the whole scope
            deltas.Delta("1", "v1", {"c": _named("c", "six")}),
            deltas.Delta("2", "v2", {"b": _named("b", "seven")}, full=True),
        ),
    ],
)
def test_a_merged_delta_has_the_effect_of_both(older: deltas.Delta, newer: deltas.Delta) -> None:
    merged = deltas.merge(older, newer)
    assert deltas.apply(HELD, merged) == deltas.apply(deltas.apply(HELD, older), newer)
    assert (merged.nonce, merged.version) == ("2", "v2")


@pytest.mark.fast
def test_a_response_with_an_unknown_schema_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        deltas.from_message(pb.ConfigDelta(schema="smimesh.dev/proxyconfig/v9"))
    body = snapshots.canonical_json(snapshots.MeshSettings())
    with pytest.raises(ValueError, match="unknown kind"):
        deltas.from_message(
            pb.ConfigDelta(resources=[pb.Resource(name="listener/x", body_json=body)])
        )
