"""`python -m smimesh.operator`: run the operator with settings from flags and environment.

Uses the in-cluster ServiceAccount, or $KUBECONFIG / --kubeconfig outside a cluster. The flags
and their checks are `flags.settings`'s parameters; `running.run` builds the explicit kopf
registry and calls `kopf.operator(...)` beside the config server, webhooks and CA upkeep.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from typing import Any

import typer

from smimesh.kube import clients
from smimesh.operator import flags, running

HELP = """Run the smimesh operator with settings from flags and environment.

Uses the in-cluster ServiceAccount, or $KUBECONFIG / --kubeconfig outside a cluster."""
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(help=HELP)
@functools.wraps(flags.settings)  # the command's flags are the parameters of flags.settings
def main(**values: Any) -> None:
    settings = flags.settings(**values)
    if values["kubeconfig"]:
        os.environ["KUBECONFIG"] = values["kubeconfig"]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kopf reports every handled watch event at INFO: one line per object change.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(running.run(settings))
    except clients.NoClusterError as exc:
        sys.exit(f"smimesh operator: {exc}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    app(prog_name="python -m smimesh.operator")
