"""`smimesh demo`: the main job on the embedded local control plane, step by step.

Starts etcd + kube-apiserver (`smimesh.testing.controlplane`), installs the SMI CRDs from
`manifests/crds/`, and runs every later step that exists; a step not built yet is named as
such, never faked. Registered by `smimesh.cli.main`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from smimesh.testing import binaries, controlplane

_CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crds"

NOT_BUILT = (
    ("run the operator", "the operator issue (#4)"),
    (
        "start two local workloads with sidecars behind one Service",
        "the sidecar (#5) and local workloads (#7)",
    ),
    ("apply a TrafficSplit and show the traffic share follow the weights", "#4, #5 and #7"),
)


def _install_crds(plane: controlplane.ControlPlane, say: Callable[[str], None]) -> bool:
    files = sorted(_CRD_DIR.glob("*.yaml")) if _CRD_DIR.is_dir() else []
    if not files:
        say(f"[yellow]not built yet[/]: the SMI CRDs ({_CRD_DIR} is empty; issue #3)")
        return False
    for path in files:
        result = plane.kubectl("apply", "--server-side", "-f", str(path))
        if result.returncode != 0:
            raise typer.Exit(_fail(f"applying {path.name} failed: {result.stderr.strip()}"))
    established = plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"
    )
    if established.returncode != 0:
        raise typer.Exit(_fail(f"CRDs did not become established: {established.stderr.strip()}"))
    served = plane.kubectl("api-resources", "--api-group=split.smi-spec.io", "-o", "name")
    say(f"[green]✔[/] SMI CRDs installed ({len(files)} files); split API: {served.stdout.split()}")
    return True


def _fail(message: str) -> int:
    Console(stderr=True).print(f"[red]✖ {message}[/]")
    return 1


def demo(
    keep: bool = typer.Option(
        False, "--keep", help="Leave the control plane running until Ctrl-C, to explore it."
    ),
) -> None:
    """Run the main job on a local control plane (etcd + kube-apiserver as processes).

    The first run builds kube-apiserver with Go (minutes); later runs reuse the cache.

    Example: smimesh demo --keep
    """
    console = Console()
    say: Callable[[str], None] = console.print
    try:
        found = binaries.ensure_binaries(say=lambda message: console.print(f"[dim]{message}[/]"))
        say("[bold]1.[/] starting the local control plane (etcd + kube-apiserver)")
        with controlplane.ControlPlane(found, say=lambda m: say(f"[green]✔[/] {m}")) as plane:
            say(f"   kubeconfig: {plane.kubeconfig}")
            say("[bold]2.[/] installing the SMI CRDs")
            _install_crds(plane, say)
            for number, (step, issue) in enumerate(NOT_BUILT, start=3):
                say(f"[bold]{number}.[/] {step}: [yellow]not built yet[/] ({issue})")
            if keep:
                say(f"control plane up; try: kubectl --kubeconfig={plane.kubeconfig} get crds")
                say("press Ctrl-C to stop")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    except (binaries.BinariesError, controlplane.ControlPlaneError) as exc:
        raise typer.Exit(_fail(str(exc))) from None
    say("control plane stopped; nothing left running")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
