"""The `smimesh` and `kubectl-smi` entry points: one typer app, a module per command group.

Each command module (`demo`, `versioning`, ...) exposes `register(app)`; this module only
assembles them. Nothing imports cli.
"""

from __future__ import annotations

import sys

import typer

from smimesh.cli import (
    authorities,
    checking,
    conforming,
    crds,
    demo,
    injecting,
    installing,
    proxies,
    sidecars,
    splitting,
    stats,
    statuses,
    validating,
    versioning,
    workloads,
)

app = typer.Typer(
    name="smimesh",
    help="smimesh: an SMI service mesh for Kubernetes.\n\n"
    "Also installed as the kubectl plugin `kubectl-smi`, so `kubectl smi COMMAND` works "
    "once the virtualenv's bin directory is on PATH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (
    authorities,
    checking,
    conforming,
    crds,
    demo,
    injecting,
    installing,
    proxies,
    sidecars,
    splitting,
    stats,
    statuses,
    validating,
    versioning,
    workloads,
):
    _module.register(app)


def main() -> None:
    """`smimesh ...`"""
    app(prog_name="smimesh")


def kubectl_main() -> None:
    """`kubectl smi ...` (kubectl runs `kubectl-smi` with the remaining arguments)."""
    app(prog_name="kubectl smi", args=sys.argv[1:])
