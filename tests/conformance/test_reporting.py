"""Case selection and report formats of the conformance suite (no cluster needed)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree

import pytest

from smimesh.conformance import reporting, running, stages
from smimesh.conformance.cases import registry


def _case(name: str) -> registry.Case:
    def run(stage: stages.Stage) -> None:
        raise AssertionError("not run here")

    return registry.Case(name, "split.smi-spec.io/v1alpha4", "a case", run)


RESULTS = [
    running.Result(_case("split/weights-75-25"), "passed", 3.25),
    running.Result(_case("split/matches"), "failed", 1.0, "b got 0.400 | expected 0.25"),
    running.Result(_case("access/no-target-blocks"), "error", 0.5, "MeshError: boom"),
]


def test_focus_and_skip_select_by_substring_in_catalog_order() -> None:
    every = running.select(())
    assert len(every) >= 20
    splits = running.select(["split/"])
    assert splits
    assert all(c.name.startswith("split/") for c in splits)
    without = running.select(["split/"], ["version", "weights"])
    assert [c.name for c in without] == [
        c.name for c in splits if "version" not in c.name and "weights" not in c.name
    ]
    assert running.select(["no-such-case"]) == []


def test_markdown_groups_by_area_and_escapes_reasons() -> None:
    text = reporting.as_markdown(RESULTS)
    assert text.index("## split") < text.index("## access")
    assert "| split/weights-75-25 | split.smi-spec.io/v1alpha4 | ✔ passed | 3.2 |  |" in text
    assert "b got 0.400 \\| expected 0.25" in text
    assert text.endswith("**1 passed, 1 failed, 1 error**")


def test_json_and_junit_carry_every_outcome() -> None:
    parsed = json.loads(reporting.as_json(RESULTS))
    assert [(c["case"], c["outcome"]) for c in parsed] == [
        ("split/weights-75-25", "passed"),
        ("split/matches", "failed"),
        ("access/no-target-blocks", "error"),
    ]
    suite = ElementTree.fromstring(reporting.as_junit(RESULTS))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    failed = suite.find("testcase[@name='split/matches']/failure")
    assert failed is not None
    assert failed.get("message") == "b got 0.400 | expected 0.25"


def test_report_format_follows_the_file_suffix() -> None:
    assert reporting.for_path("out.json") == ".json"
    assert reporting.for_path("smi.xml") == ".xml"
    assert reporting.for_path("smi.md") == ".md"
    with pytest.raises(ValueError, match=re.escape("a report ends in .json, .xml, .md")):
        reporting.for_path("smi.txt")
