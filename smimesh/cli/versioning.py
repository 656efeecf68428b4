"""`smimesh version`: the client's version (operator and proxy versions come with the operator).

Registered by `smimesh.cli.main`.
"""

from __future__ import annotations

import typer

import smimesh


def version() -> None:
    """Print the smimesh client version.

    Example: kubectl smi version
    """
    typer.echo(f"smimesh client {smimesh.__version__}")


def register(app: typer.Typer) -> None:
    app.command("version")(version)
