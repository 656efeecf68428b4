"""JSON Patches from before/after pairs apply back exactly, with escaped pointers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smimesh.webhooks.injection import patches

from .pods import apply_patch

pytestmark = pytest.mark.fast

keys = st.sampled_from(["a", "b", "c/d", "e~f", "smimesh.dev/injected"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@given(before=json_values, after=json_values)
def test_a_patch_turns_before_into_after(before: Any, after: Any) -> None:
    assert apply_patch(before, patches.json_patch(before, after)) == after


@given(document=json_values)
def test_nothing_changed_means_an_empty_patch(document: Any) -> None:
    assert patches.json_patch(document, document) == []


def test_annotation_keys_are_escaped_in_pointers() -> None:
    before = {"metadata": {"annotations": {"a": "1"}}}
    after = {"metadata": {"annotations": {"a": "1", "smimesh.dev/injected": "yes"}}}
    assert patches.json_patch(before, after) == [
        {"op": "add", "path": "/metadata/annotations/smimesh.dev~1injected", "value": "yes"}
    ]


def test_a_list_grown_at_its_start_gets_inserts_not_a_replace() -> None:
    assert patches.json_patch({"l": [1, 2]}, {"l": [0, 9, 1, 2]}) == [
        {"op": "add", "path": "/l/0", "value": 0},
        {"op": "add", "path": "/l/1", "value": 9},
    ]
