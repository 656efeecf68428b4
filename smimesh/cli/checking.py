"""`kubectl smi check [--pre]`: run smimesh's health checks and show ✔/‼/✖ with hints.

Registered by `smimesh.cli.main`. The checks themselves are the catalog in
`smimesh.conformance.catalog` (shared with the conformance suite); this module only picks the
groups, prints each outcome as it arrives (text) or all at once (JSON), and sets the exit
code: 0 all passed (warnings allowed), 1 a check failed, 2 the cluster cannot be reached.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from smimesh.cli import connecting
from smimesh.conformance import catalog, checks
from smimesh.kube import names

STYLES: dict[checks.Status, str] = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


class CheckFormat(StrEnum):
    text = "text"
    json = "json"


def check(
    pre: Annotated[
        bool, typer.Option("--pre", help="Check that the cluster is ready for `install` instead.")
    ] = False,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="The mesh namespace.")
    ] = names.MESH_NAMESPACE,
    output: Annotated[
        CheckFormat, typer.Option("--output", "-o", help="text or json.", case_sensitive=False)
    ] = CheckFormat.text,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Check that the mesh is installed and healthy (or, with --pre, can be installed).

    Groups: kubernetes-api, smimesh-crds, smimesh-operator, smimesh-webhooks,
    smimesh-proxies, smi-objects (with --pre: kubernetes-api, pre-installation).
    Exit code 0 when every check passed (‼ warnings allowed), 1 when one failed,
    2 when the cluster cannot be reached.

    Example: kubectl smi check --pre && kubectl smi install && kubectl smi check
    """
    with connecting.api_client(kubeconfig, context) as api:
        ctx = checks.CheckContext(api, namespace=namespace, timeout=connecting.REQUEST_TIMEOUT)
        outcomes: list[checks.Outcome] = []
        console = Console(highlight=False, soft_wrap=True)
        group = ""
        for outcome in checks.run(catalog.groups(pre=pre), ctx):
            outcomes.append(outcome)
            if output is CheckFormat.json:
                continue
            if outcome.group != group:
                group = outcome.group
                console.print(f"{'' if len(outcomes) == 1 else chr(10)}[bold]{group}[/]")
                console.print("-" * len(group))
            symbol = checks.SYMBOLS[outcome.status]
            line = f"[{STYLES[outcome.status]}]{symbol}[/] {escape(outcome.description)}"
            if outcome.detail:
                line += f" [dim]({escape(outcome.detail)})[/]"
            console.print(line)
            if outcome.status in ("warn", "fail"):
                console.print(f"    [dim]hint: {escape(outcome.hint)}[/]")
    unreachable = outcomes[0].status == "fail" if outcomes else True
    passed = checks.succeeded(outcomes)
    if output is CheckFormat.json:
        report = {"success": passed, "checks": [outcome.as_json() for outcome in outcomes]}
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        verdict = (
            "[green]Status check results are ✔[/]" if passed else "[red]some checks failed ✖[/]"
        )
        console.print(f"\n{verdict}")
    if unreachable:
        raise typer.Exit(connecting.BAD_INPUT)
    raise typer.Exit(connecting.OK if passed else connecting.FAILED)


def register(app: typer.Typer) -> None:
    app.command("check")(connecting.guarded(check))
