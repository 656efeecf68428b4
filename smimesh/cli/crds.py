"""`smimesh crds`: write (or `--check`) the generated SMI CRDs in smimesh/manifests/crds/.

Registered by `smimesh.cli.main`; the CRDs come from `smimesh.smi.crdgen`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smimesh.smi import crdgen

DEFAULT_DIR = Path("smimesh/manifests/crds")
"""This checkout's copy, from its root (the package data `kubectl smi install` reads)."""


def crds(
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Where the CRD files live.")
    ] = DEFAULT_DIR,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if the files differ from the models.")
    ] = False,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Print all CRDs as one YAML stream instead.")
    ] = False,
    conversion: Annotated[
        str,
        typer.Option(
            "--conversion",
            help="Webhook (the product) or None (test-only: no version conversion).",
        ),
    ] = "Webhook",
) -> None:
    """Generate the SMI CRDs from the models.

    Example: smimesh crds --check
    """
    if conversion not in ("Webhook", "None"):
        typer.echo(f"--conversion must be Webhook or None, not {conversion!r}", err=True)
        raise typer.Exit(2)
    files = crdgen.rendered(strategy="Webhook" if conversion == "Webhook" else "None")
    if stdout:
        typer.echo("---\n".join(files.values()), nl=False)
        return
    if check:
        stale = [
            name
            for name, text in files.items()
            if not (directory / name).is_file() or (directory / name).read_text() != text
        ]
        extra = sorted(
            path.name
            for path in directory.glob("*.yaml")
            if path.name not in files and path.is_file()
        )
        for name in stale:
            typer.echo(f"out of date: {directory / name}", err=True)
        for name in extra:
            typer.echo(f"not generated: {directory / name}", err=True)
        if stale or extra:
            typer.echo("run `smimesh crds` (or `make crds`) and commit the result", err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(files)} CRDs in {directory} are current")
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    typer.echo(f"wrote {len(files)} CRDs to {directory}")


def register(app: typer.Typer) -> None:
    app.command("crds")(crds)
