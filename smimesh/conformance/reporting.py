"""Conformance results as text (one line per case as it finishes, then a summary), JSON,
JUnit XML for CI systems, or a Markdown table by spec area and version. Used by
`smimesh conformance run`; `for_path` picks the format from a report file's name. A skipped
case (the target lacks what it needs) carries its reason everywhere and is counted apart."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Sequence

from smimesh.conformance import running

MARKS = {"passed": "✔", "failed": "✖", "error": "!", "skipped": "○"}
OUTCOMES: tuple[running.Outcome, ...] = ("passed", "failed", "error", "skipped")


def line(result: running.Result) -> str:
    text = f"{MARKS[result.outcome]} {result.case.name} [{result.case.spec}] {result.seconds:.1f}s"
    return f"{text}\n    {result.message}" if result.message else text


def summary(results: Sequence[running.Result]) -> str:
    counts = Counter(result.outcome for result in results)
    return ", ".join(f"{counts[key]} {key}" for key in OUTCOMES)


def as_json(results: Sequence[running.Result]) -> str:
    return json.dumps(
        [
            {
                "case": r.case.name,
                "spec": r.case.spec,
                "origin": r.case.origin,
                "description": r.case.description,
                "outcome": r.outcome,
                "seconds": round(r.seconds, 2),
                "message": r.message,
            }
            for r in results
        ],
        indent=2,
    )


def as_junit(results: Sequence[running.Result]) -> str:
    counts = Counter(result.outcome for result in results)
    suite = ElementTree.Element(
        "testsuite",
        name="smi-conformance",
        tests=str(len(results)),
        failures=str(counts["failed"]),
        errors=str(counts["error"]),
        skipped=str(counts["skipped"]),
    )
    for result in results:
        element = ElementTree.SubElement(
            suite,
            "testcase",
            classname=result.case.spec,
            name=result.case.name,
            time=f"{result.seconds:.2f}",
        )
        if result.outcome != "passed":
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}[result.outcome]
            ElementTree.SubElement(element, tag, message=result.message)
    return ElementTree.tostring(suite, encoding="unicode")


def as_markdown(results: Sequence[running.Result]) -> str:
    """A table per spec area (access, specs, split), one row per case, then the summary."""
    lines = ["# SMI conformance", ""]
    areas: dict[str, list[running.Result]] = {}
    for result in results:
        areas.setdefault(result.case.name.split("/", 1)[0], []).append(result)
    for area, members in areas.items():
        lines += [
            f"## {area}",
            "",
            "| case | spec version | result | seconds | reason |",
            "|---|---|---|---|---|",
        ]
        for r in members:
            reason = r.message.replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {r.case.name} | {r.case.spec} | {MARKS[r.outcome]} {r.outcome} "
                f"| {r.seconds:.1f} | {reason} |"
            )
        lines.append("")
    lines.append(f"**{summary(results)}**")
    return "\n".join(lines)


FORMATS = {".json": as_json, ".xml": as_junit, ".md": as_markdown}


def for_path(name: str) -> str:
    """The format a report file's suffix asks for; ValueError for an unknown suffix."""
    for suffix in FORMATS:
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{name}: a report ends in {', '.join(FORMATS)}")
