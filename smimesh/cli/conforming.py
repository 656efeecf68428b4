"""`smimesh conformance run` / `list`: the SMI conformance suite, on the embedded local
control plane (default) or another cluster. Registered by `smimesh.cli.main`."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smimesh.conformance import reporting, running
from smimesh.testing import clusters

app = typer.Typer(help="The SMI conformance suite.", no_args_is_help=True)


class Output(enum.StrEnum):
    text = "text"
    json = "json"
    junit = "junit"


@app.command("list")
def list_cases() -> None:
    """List the cases: name, spec version checked, and what each proves.

    Example: smimesh conformance list
    """
    for item in running.select(()):
        typer.echo(f"{item.name}  [{item.spec}]  ({item.origin})\n    {item.description}")


@app.command("run")
def run(
    case: Annotated[
        list[str] | None,
        typer.Option("--case", "-c", help="Run only cases whose name contains this (repeatable)."),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="text, json or junit.")
    ] = Output.text,
    report: Annotated[Path | None, typer.Option(help="Also write the report here.")] = None,
    cluster: Annotated[
        str,
        typer.Option(
            help="local: the embedded control plane (etcd + kube-apiserver as processes); "
            "existing: $KUBECONFIG (the test app still runs as local workloads)."
        ),
    ] = "local",
) -> None:
    """Run the conformance cases; exit 0 if all pass, 1 if any fails, 2 on bad input.

    The first run on a machine builds kube-apiserver with Go (minutes).

    Example: smimesh conformance run --case split/ -o junit --report smi.xml
    """
    err = Console(stderr=True)
    chosen = running.select(case or ())
    if not chosen:
        err.print(f"[red]no case matches {case}; see `smimesh conformance list`[/]")
        raise typer.Exit(2)
    if cluster not in ("local", "existing"):
        err.print(f"[red]--cluster must be local or existing, not {cluster!r}[/]")
        raise typer.Exit(2)
    mode: clusters.Mode = "local" if cluster == "local" else "existing"

    def progress(result: running.Result) -> None:
        if output is Output.text:
            typer.echo(reporting.line(result))

    try:
        results = running.run_local(
            chosen, mode=mode, say=lambda m: err.print(f"[dim]{m}[/]"), on_result=progress
        )
    except Exception as exc:  # set-up failures are reported, never a traceback
        err.print(f"[red]✖ the suite could not start: {type(exc).__name__}: {exc}[/]")
        raise typer.Exit(2) from None
    rendered = {
        Output.text: reporting.summary(results),
        Output.json: reporting.as_json(results),
        Output.junit: reporting.as_junit(results),
    }[output]
    typer.echo(rendered)
    if report is not None:
        report.write_text(rendered + "\n")
    raise typer.Exit(0 if all(r.outcome == "passed" for r in results) else 1)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="conformance")
