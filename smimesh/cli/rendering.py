"""`-o table|json|yaml` for the commands that list things: one renderer, so every list looks
and parses the same.

Used by the `split`, `status`, `stat`/`top` and `identity` command modules: they hand over
rows (for the table) and plain data (for JSON and YAML); this module prints them with rich or
as documents.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


Output = Annotated[
    Format, typer.Option("--output", "-o", help="table, json or yaml.", case_sensitive=False)
]


def build(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """A kubectl-style table (no borders, upper-case headers), never wrapped."""
    shown = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        shown.add_column(header.upper(), no_wrap=True, overflow="ignore")
    for row in rows:
        shown.add_row(*(Text(cell) for cell in row))  # cells are data, not markup
    return shown


def console() -> Console:
    """stdout, at least 200 columns wide so tables are never wrapped."""
    return Console(width=max(200, Console().width), soft_wrap=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """`build`'s table on stdout."""
    console().print(build(headers, rows))


def documents(data: Any, output: Format) -> None:
    """`data` as one JSON or YAML document on stdout."""
    if output is Format.json:
        typer.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
