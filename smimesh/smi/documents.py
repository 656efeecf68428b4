"""From raw Kubernetes objects to typed SMI objects: the one parser, and YAML streams.

`parse` types one object (a dict) as the model of its SMI version and converts it to its
kind's hub, reporting every problem with its field path; `load_stream` and `expand` turn YAML
text (multi-document, `kind: List`) into such dicts. Used by every reader of SMI objects: the
validators (`smimesh.smi.validating` through `smimesh.cli.validating` and
`smimesh.webhooks.validating`), the conversion webhook, the compiler's index
(`smimesh.compiler.parsing`) and the CLI's cluster reads (`smimesh.cli.reading`).
With `quirks=True` (the validators), producers' known quirks are read leniently with a
warning (the apiserver would silently drop the field): an HTTPRouteGroup v1alpha3/v1alpha4
with `matches` at the top level, and a TrafficTarget v1alpha3 with `spec.destination.port`
(both written by the conformance suite).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from smimesh.smi import conversion, kinds
from smimesh.smi.objects import Resource
from smimesh.smi.problems import Problem, field_path

__all__ = ["ParseError", "Parsed", "YAMLError", "expand", "load_stream", "parse"]


class YAMLError(ValueError):
    """Text that is not YAML."""


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


class ParseError(ValueError):
    """An object that cannot be read: which one (`subject`), and what is wrong where.

    `problems` are the errors, each with its field path ("" for the whole object); the message
    is `subject: path: reason; ...` (the path left out where it is "").
    """

    def __init__(self, subject: str, problems: Sequence[Problem]) -> None:
        self.subject = subject
        self.problems = tuple(problems)
        found = "; ".join(f"{p.path}: {p.reason}" if p.path else p.reason for p in self.problems)
        super().__init__(f"{subject}: {found}")


@dataclass(frozen=True)
class Parsed:
    """What `parse` found in one object: who it is, its typed forms, and every problem.

    `version` is the version whose layout the object was read in (its apiVersion's, unless
    `any_version` found another), None when SMI has no such kind in that version; `obj` is
    the object in that version and `hub` its hub, each None when it could not be had.
    """

    api_version: str | None
    kind: str | None
    name: str | None
    namespace: str | None
    smi: bool
    version: str | None = None
    obj: Resource | None = None
    hub: Resource | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def subject(self) -> str:
        """`Kind namespace/name`, as messages name an object."""
        return f"{self.kind} {self.namespace or ''}/{self.name or ''}"

    def require(self) -> Resource:
        """The hub (the object as written if parsed with `hub=False`); raise ParseError
        naming the object and every error if there is any, or if it is no SMI object."""
        errors = [problem for problem in self.problems if problem.severity == "error"]
        found = self.hub if self.hub is not None else self.obj
        if errors or found is None:
            raise ParseError(self.subject, errors or [Problem("", "not an SMI object")])
        return found


def _quirks(raw: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
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


def _read(
    model: type[Resource], wire: dict[str, Any], *, hub: bool
) -> tuple[Resource | None, Resource | None, list[Problem]]:
    """(object, hub, problems) of `wire` read as `model`."""
    try:
        obj = model.model_validate(wire)
    except pydantic.ValidationError as error:
        return None, None, _schema_problems(error)
    except RecursionError:
        return None, None, [Problem("", "nested too deeply")]
    if not hub:
        return obj, None, []
    try:
        return obj, conversion.to_hub(obj), []
    except conversion.ConversionError as error:
        return obj, None, [Problem(error.path, error.reason)]
    except (ValueError, RecursionError) as error:  # e.g. a status too deep to serialize
        return obj, None, [Problem("", f"cannot be converted to its hub: {error}")]


def parse(raw: Any, *, quirks: bool = False, any_version: bool = False, hub: bool = True) -> Parsed:
    """Type one raw Kubernetes object as its SMI version's model and as its hub; never raises.

    Every finding is a problem with a field path: a non-SMI kind is a note (`smi` False);
    every schema error and a conversion error are errors; `Parsed.require` turns them into a
    `ParseError`. Keywords, for where readers really differ: `quirks` reads producers' known
    quirks (see the module docstring) with a warning instead of refusing them; `any_version`
    reads a body that does not fit its apiVersion as the newest version it fits (a CRD served
    without a conversion webhook returns its stored body under every version), reporting the
    problems of its own version if none fits; `hub=False` stops at the version's model (the
    validator converts by itself, to report problems in the fields of the version written).
    """
    if not isinstance(raw, dict):
        return Parsed(
            None,
            None,
            None,
            None,
            False,
            problems=(Problem("", "document is not a mapping (an object)"),),
        )
    api_version, kind = _text(raw.get("apiVersion")), _text(raw.get("kind"))
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    name, namespace = _text(metadata.get("name")), _text(metadata.get("namespace"))

    def parsed(
        smi: bool,
        problems: list[Problem],
        version: str | None = None,
        obj: Resource | None = None,
        hub_obj: Resource | None = None,
    ) -> Parsed:
        return Parsed(
            api_version, kind, name, namespace, smi, version, obj, hub_obj, tuple(problems)
        )

    if api_version is None or kind is None:
        missing = "apiVersion" if api_version is None else "kind"
        return parsed(False, [Problem(missing, "required string field is missing")])
    group, _, declared = api_version.partition("/")
    if group not in kinds.groups():
        return parsed(
            False, [Problem("", f"not an SMI kind ({api_version} {kind}): ignored", "note")]
        )
    info = kinds.by_kind(group, kind)
    versions = [declared] if info is not None and declared in info.versions else []
    if info is not None and any_version:
        versions += sorted((v for v in info.versions if v != declared), reverse=True)
    if info is None or not versions:
        known = ", ".join(sorted(info.versions)) if info else "none"
        return parsed(
            True,
            [
                Problem(
                    "apiVersion",
                    f"{api_version} has no kind {kind} (released versions of {kind}: {known})",
                )
            ],
        )
    wire, noted = _quirks(raw) if quirks else (raw, [])
    first: Parsed | None = None
    for version in versions:
        layout = wire if version == declared else {**wire, "apiVersion": f"{group}/{version}"}
        obj, hub_obj, problems = _read(info.versions[version], layout, hub=hub)
        if not problems:
            return parsed(True, noted, version, obj, hub_obj)
        if first is None:
            own = version == declared
            first = parsed(True, noted + problems, version if own else None, obj if own else None)
    assert first is not None
    return first
