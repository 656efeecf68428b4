"""`kubectl smi validate -f FILE_OR_DIR`: schema and semantic checks of SMI manifests.

Registered by `smimesh.cli.main`. Reads YAML with `inputs` (multi-document, `-` for stdin,
directories recursively), types each document with `smimesh.smi.documents`, checks it with
`smimesh.smi.validating`, and prints a text or JSON report. Exit 0: all valid; 1: something
invalid; 2: some input unreadable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import typer

from smimesh.cli import inputs
from smimesh.smi import documents, problems, validating
from smimesh.smi.objects import Resource

Verdict = Literal["valid", "invalid", "ignored", "unreadable"]


@dataclass
class Entry:
    file: str
    index: str | None
    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    verdict: Verdict = "valid"
    problems: list[problems.Problem] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["apiVersion"] = data.pop("api_version")
        return data


def run(paths: list[str]) -> list[Entry]:
    """Validate every document of every path; the entries in input order."""
    entries: list[Entry] = []
    typed: list[tuple[Entry, Resource]] = []
    for source in inputs.read(paths):
        label, text, error = source.label, source.text, source.error
        if text is None:
            entries.append(
                Entry(
                    label,
                    None,
                    verdict="unreadable",
                    problems=[problems.Problem("", error or "unreadable")],
                )
            )
            continue
        try:
            loaded = documents.load_stream(text)
        except documents.YAMLError as yaml_error:
            entries.append(
                Entry(
                    label,
                    None,
                    verdict="unreadable",
                    problems=[problems.Problem("", str(yaml_error))],
                )
            )
            continue
        for index, raw in documents.expand(loaded):
            parsed = documents.parse(raw, quirks=True, hub=False)
            entry = Entry(
                label,
                index,
                parsed.api_version,
                parsed.kind,
                parsed.name,
                parsed.namespace,
                problems=list(parsed.problems),
            )
            if not parsed.smi and not problems.is_invalid(parsed.problems):
                entry.verdict = "ignored"
            if parsed.obj is not None:
                typed.append((entry, parsed.obj))
            entries.append(entry)
    checked = validating.check_all([obj for _, obj in typed])
    for (entry, _), found in zip(typed, checked, strict=True):
        entry.problems += found
    for entry in entries:
        if entry.verdict == "valid" and problems.is_invalid(entry.problems):
            entry.verdict = "invalid"
    return entries


def _render_text(entries: list[Entry]) -> str:
    lines: list[str] = []
    for entry in entries:
        where = entry.file if entry.index is None else f"{entry.file}#{entry.index}"
        what = f"{entry.kind or '?'}/{entry.name or '?'}" if entry.kind else ""
        head = f"{where} {what}".rstrip()
        lines.append(f"{head}: {entry.verdict}")
        lines += [f"  {problem}" for problem in entry.problems]
    counts = {
        verdict: sum(e.verdict == verdict for e in entries)
        for verdict in ("valid", "invalid", "ignored", "unreadable")
    }
    lines.append(", ".join(f"{number} {verdict}" for verdict, number in counts.items()))
    return "\n".join(lines)


def exit_code(entries: list[Entry]) -> int:
    if any(entry.verdict == "unreadable" for entry in entries):
        return 2
    return 1 if any(entry.verdict == "invalid" for entry in entries) else 0


def validate(
    filenames: Annotated[
        list[str],
        typer.Option("--filename", "-f", help="File or directory of YAML; - for stdin."),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Validate SMI manifests (every released version): schema plus semantics.

    Exit code 0 if all SMI objects are valid, 1 if any is invalid, 2 if any input could not
    be read. Other kinds are ignored with a note.

    Example: kubectl smi validate -f manifests/ -f - -o json < split.yaml
    """
    if output not in ("text", "json"):
        typer.echo(f"-o must be text or json, not {output!r}", err=True)
        raise typer.Exit(2)
    entries = run(filenames)
    if output == "json":
        report = {
            "entries": [entry.as_json() for entry in entries],
            "valid": exit_code(entries) == 0,
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(_render_text(entries))
    raise typer.Exit(exit_code(entries))


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
