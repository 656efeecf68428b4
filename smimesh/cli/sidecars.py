"""`smimesh sidecar run|init|wait-ready`: the proxy, its iptables init and its readiness wait.

The commands live in `smimesh.sidecar.commands` (so that `python -m smimesh.sidecar` needs no
CLI import); this module mounts them under `smimesh sidecar`. Registered by `smimesh.cli.main`.
"""

from __future__ import annotations

import typer

from smimesh.sidecar import commands


def register(app: typer.Typer) -> None:
    app.add_typer(commands.app, name="sidecar")
