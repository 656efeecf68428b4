"""Case selection and report formats of the conformance suite (no cluster needed)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from smimesh.cli import main
from smimesh.conformance import reporting, running, stages
from smimesh.conformance.cases import registry

pytestmark = pytest.mark.fast


def _case(name: str) -> registry.Case:
    def run(stage: stages.Stage) -> None:
        raise AssertionError("not run here")

    return registry.Case(name, "split.smi-spec.io/v1alpha4", "a case", run)


RESULTS = [
    running.Result(_case("split/weights-75-25"), "passed", 3.25),
    running.Result(_case("split/matches"), "failed", 1.0, "b got 0.400 | expected 0.25"),
    running.Result(_case("access/no-target-blocks"), "error", 0.5, "MeshError: boom"),
    running.Result(_case("access/udp"), "skipped", 0.0, "target has no UDP route support"),
]


class _Resettable:
    """Stands in for a stage: `run_cases` only resets it, the cases here never touch it."""

    def reset(self) -> None:
        pass


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
    assert "| access/udp | split.smi-spec.io/v1alpha4 | ○ skipped | 0.0 | target has no UDP" in text
    assert text.endswith("**1 passed, 1 failed, 1 error, 1 skipped**")


def test_json_and_junit_carry_every_outcome() -> None:
    parsed = json.loads(reporting.as_json(RESULTS))
    assert [(c["case"], c["outcome"]) for c in parsed] == [
        ("split/weights-75-25", "passed"),
        ("split/matches", "failed"),
        ("access/no-target-blocks", "error"),
        ("access/udp", "skipped"),
    ]
    assert parsed[3]["message"] == "target has no UDP route support"
    suite = ElementTree.fromstring(reporting.as_junit(RESULTS))
    counts = [suite.get(key) for key in ("tests", "failures", "errors", "skipped")]
    assert counts == ["4", "1", "1", "1"]
    failed = suite.find("testcase[@name='split/matches']/failure")
    assert failed is not None
    assert failed.get("message") == "b got 0.400 | expected 0.25"
    skipped = suite.find("testcase[@name='access/udp']/skipped")
    assert skipped is not None
    assert skipped.get("message") == "target has no UDP route support"
    assert suite.find("testcase[@name='access/udp']/failure") is None


def test_a_case_that_raises_skipped_is_skipped_with_its_reason_and_the_suite_goes_on() -> None:
    def skips(stage: stages.Stage) -> None:
        raise stages.CaseSkippedError("target cannot run UDP")

    def fails(stage: stages.Stage) -> None:
        raise stages.CaseFailedError("b got nothing")

    chosen = [
        registry.Case("specs/udp", "specs.smi-spec.io/v1alpha4", "UDP", skips),
        registry.Case("split/x", "split.smi-spec.io/v1alpha4", "x", fails),
    ]
    seen: list[running.Result] = []
    results = running.run_cases(cast(stages.Stage, _Resettable()), chosen, on_result=seen.append)
    assert [(r.outcome, r.message) for r in results] == [
        ("skipped", "target cannot run UDP"),
        ("failed", "b got nothing"),
    ]
    assert seen == results
    assert reporting.line(results[0]).startswith("○ specs/udp [specs.smi-spec.io/v1alpha4]")
    assert reporting.summary(results) == "0 passed, 1 failed, 0 error, 1 skipped"


def test_report_format_follows_the_file_suffix() -> None:
    assert reporting.for_path("out.json") == ".json"
    assert reporting.for_path("smi.xml") == ".xml"
    assert reporting.for_path("smi.md") == ".md"
    with pytest.raises(ValueError, match=re.escape("a report ends in .json, .xml, .md")):
        reporting.for_path("smi.txt")


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [(("passed", "skipped"), 0), (("skipped",), 0), (("passed", "skipped", "failed"), 1)],
)
def test_conformance_run_exits_zero_when_cases_only_pass_or_skip(
    monkeypatch: pytest.MonkeyPatch, outcomes: Sequence[running.Outcome], code: int
) -> None:
    def run_local(
        chosen: Sequence[registry.Case], *, on_result: Callable[[running.Result], None], **_: Any
    ) -> list[running.Result]:
        results = [running.Result(c, o, 0.1, o) for c, o in zip(chosen, outcomes, strict=False)]
        for result in results:
            on_result(result)
        return results

    monkeypatch.setattr(running, "run_local", run_local)
    result = CliRunner().invoke(main.app, ["conformance", "run", "--focus", "split/"])
    assert result.exit_code == code, result.output
    assert f"{outcomes.count('skipped')} skipped" in result.output
