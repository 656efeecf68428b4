"""Fuzzing of the parser and validator (`make fuzz`, 60 s; not collected by `make test`).

Valid objects of every version with random parts replaced by random JSON, and random YAML
text, go through `documents` and `validating`: nothing may raise, hang (hypothesis deadline) or
come back as anything but problems with a path and a reason.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from smimesh.smi import documents, validating
from smimesh.smi.problems import Problem
from tests import fuzzing
from tests.smi import strategies

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["500m", "-1", "1e99", "(a)\\1", "[", "*", "GET", "ServiceAccount"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    kind, version = draw(st.sampled_from(strategies.VERSIONS))
    wire: Any = draw(strategies.objects(kind, version))
    for _ in range(draw(st.integers(0, 3))):
        node = wire
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            child = node[key]
            if not isinstance(child, dict | list) or not child:
                node[key] = draw(json_values)
                break
            node = child
        else:
            if isinstance(node, dict):
                node[draw(st.text(max_size=8))] = draw(json_values)
    return wire


def _check(raw: Any) -> None:
    for options in ({}, {"any_version": True}, {"quirks": True, "hub": False}):
        for problem in documents.parse(raw, **options).problems:
            assert isinstance(problem, Problem)
            assert problem.reason
    parsed = documents.parse(raw, quirks=True, hub=False)
    found = list(parsed.problems)
    if parsed.obj is not None:
        found += validating.check_all([parsed.obj])[0]
    for problem in found:
        assert isinstance(problem, Problem)
        assert problem.reason


@fuzzing.examples(500, deadline=2000)
@given(raw=st.one_of(mutated(), json_values))
def fuzz_objects(raw: Any) -> None:
    _check(raw)


@fuzzing.examples(300, deadline=2000)
@given(text=st.text(max_size=200))
def fuzz_yaml_text(text: str) -> None:
    try:
        loaded = documents.load_stream(text)
    except documents.YAMLError as error:
        message = str(error)
        loaded = []
        assert message.startswith("not YAML")
    for _, raw in documents.expand(loaded):
        _check(raw)


def test_fuzz_parser_and_validator() -> None:
    assert fuzzing.rounds_within_budget(fuzz_objects, fuzz_yaml_text) > 0
