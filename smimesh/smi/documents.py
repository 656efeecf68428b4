"""From YAML text to typed SMI objects: multi-document streams, `kind: List`, schema errors.

Fed by the CLI (`kubectl smi validate`) and, later, admission payloads; feeds `validating`.
Producers' known quirks are read leniently with a warning (the apiserver would silently drop
the field): an HTTPRouteGroup v1alpha3/v1alpha4 with `matches` at the top level, and a
TrafficTarget v1alpha3 with `spec.destination.port` (both written by the conformance suite).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pydantic
import yaml

from smimesh.smi import kinds
from smimesh.smi.objects import Resource
from smimesh.smi.problems import Problem, field_path

__all__ = ["Parsed", "YAMLError", "load_stream", "parse_object"]


class YAMLError(ValueError):
    """Text that is not YAML."""


@dataclass(frozen=True)
class Parsed:
    """One document: the object if it is a well-formed SMI object, and what was found."""

    index: str
    api_version: str | None
    kind: str | None
    name: str | None
    namespace: str | None
    obj: Resource | None
    smi: bool
    problems: list[Problem] = field(default_factory=list)


def load_stream(text: str) -> list[Any]:
    """Every YAML document in `text` (empty documents skipped); raises YAMLError."""
    try:
        return [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise YAMLError(f"not YAML{where}: {problem}") from None
    except RecursionError:
        raise YAMLError("not YAML: nested too deeply") from None


def expand(documents: list[Any]) -> Iterator[tuple[str, Any]]:
    """(index, document) pairs, with the items of a `kind: List` as `N.items[i]`."""
    for number, document in enumerate(documents):
        if (
            isinstance(document, dict)
            and document.get("kind") == "List"
            and isinstance(document.get("items"), list)
        ):
            for position, item in enumerate(document["items"]):
                yield f"{number}.items[{position}]", item
        else:
            yield str(number), document


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _lenient(raw: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if (
        kind == "HTTPRouteGroup"
        and api_version in ("specs.smi-spec.io/v1alpha3", "specs.smi-spec.io/v1alpha4")
        and "matches" in raw
        and "spec" not in raw
    ):
        moved = {key: value for key, value in raw.items() if key != "matches"}
        moved["spec"] = {"matches": raw["matches"]}
        return moved, [
            Problem(
                "matches",
                f"belongs under `spec` in {api_version}; the apiserver drops a top-level "
                "`matches` (read here as spec.matches)",
                "warning",
            )
        ]
    spec = raw.get("spec")
    destination = spec.get("destination") if isinstance(spec, dict) else None
    if (
        kind == "TrafficTarget"
        and api_version == "access.smi-spec.io/v1alpha3"
        and isinstance(spec, dict)
        and isinstance(destination, dict)
        and "port" in destination
    ):
        trimmed = {key: value for key, value in destination.items() if key != "port"}
        return {**raw, "spec": {**spec, "destination": trimmed}}, [
            Problem(
                "spec.destination.port",
                "is not a field of access v1alpha3 (ports moved to TCPRoute); the apiserver "
                "drops it, so this target applies to every port",
                "warning",
            )
        ]
    return raw, []


def _schema_problems(error: pydantic.ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for detail in error.errors(include_url=False):
        parts = [
            part
            for part in detail["loc"]
            if isinstance(part, int) or ("[" not in part and "-" not in part)
        ]
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            reason = "unknown field (not part of this version's schema)"
        elif detail["type"] == "missing":
            reason = "required field is missing"
        elif detail["type"] == "literal_error":
            expected = detail.get("ctx", {}).get("expected", "")
            reason = f"{detail['input']!r} is not allowed here; expected {expected}"
        problem = Problem(field_path(parts), reason)
        if problem not in problems:
            problems.append(problem)
    return problems


def parse_object(index: str, raw: Any) -> Parsed:
    """Parse one document: non-SMI kinds are noted and skipped, SMI ones are typed."""
    if not isinstance(raw, dict):
        return Parsed(
            index,
            None,
            None,
            None,
            None,
            None,
            False,
            [Problem("", "document is not a mapping (an object)")],
        )
    api_version, kind = _text(raw.get("apiVersion")), _text(raw.get("kind"))
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    name, namespace = _text(metadata.get("name")), _text(metadata.get("namespace"))

    def parsed(obj: Resource | None, smi: bool, problems: list[Problem]) -> Parsed:
        return Parsed(index, api_version, kind, name, namespace, obj, smi, problems)

    if api_version is None or kind is None:
        missing = "apiVersion" if api_version is None else "kind"
        return parsed(None, False, [Problem(missing, "required string field is missing")])
    group = api_version.partition("/")[0]
    if group not in kinds.groups():
        return parsed(
            None, False, [Problem("", f"not an SMI kind ({api_version} {kind}): ignored", "note")]
        )
    model = kinds.lookup(api_version, kind)
    if model is None:
        info = kinds.by_kind(group, kind)
        known = ", ".join(sorted(info.versions)) if info else "none"
        return parsed(
            None,
            True,
            [
                Problem(
                    "apiVersion",
                    f"{api_version} has no kind {kind} (released versions of {kind}: {known})",
                )
            ],
        )
    raw, problems = _lenient(raw)
    try:
        obj = model.model_validate(raw)
    except pydantic.ValidationError as error:
        return parsed(None, True, problems + _schema_problems(error))
    except RecursionError:
        return parsed(None, True, [*problems, Problem("", "nested too deeply")])
    return parsed(obj, True, problems)
