"""`smimesh demo`: the main job on the embedded local control plane, step by step.

Starts etcd + kube-apiserver (`smimesh.testing.controlplane`), installs `smimesh/manifests/`,
runs the operator and three local workloads (a client and two versions of `podinfo` behind one
Service) with sidecars, applies a TrafficSplit and walks it through a canary's weights,
measuring the share each version really gets. Registered by `smimesh.cli.main`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from smimesh.testing import binaries, clusters, controlplane, meshes, reaping, workloads

STEPS = ((100, 0), (90, 10), (75, 25), (50, 50), (25, 75), (0, 100))
NAMESPACE = "demo"


def _split(v1: int, v2: int) -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": "podinfo", "namespace": NAMESPACE},
        "spec": {
            "service": "podinfo",
            "backends": [
                {"service": "podinfo-v1", "weight": v1},
                {"service": "podinfo-v2", "weight": v2},
            ],
        },
    }


def _received(target: workloads.LocalWorkload, caller: workloads.LocalWorkload) -> int:
    metrics = httpx.get(f"{target.app_url(8080)}/metrics", timeout=10).json()
    return int(metrics["received"].get(f"{caller.spec.namespace}/{caller.spec.name}", 0))


def _wait_programmed(mesh: meshes.LocalMesh, timeout: float = 30.0) -> float:
    """Seconds until the split's Programmed condition covers its newest generation."""
    started = time.monotonic()
    path = "{.metadata.generation} {.status.conditions[?(@.type=='Programmed')].status}"
    path += " {.status.conditions[?(@.type=='Programmed')].observedGeneration}"
    while time.monotonic() - started < timeout:
        found = mesh.cluster.kubectl(
            "-n",
            NAMESPACE,
            "get",
            "trafficsplits.split.smi-spec.io",
            "podinfo",
            "-o",
            f"jsonpath={path}",
        ).stdout.split()
        if len(found) == 3 and found[1] == "True" and found[0] == found[2]:
            return time.monotonic() - started
        time.sleep(0.1)
    raise meshes.MeshError(f"the TrafficSplit was not Programmed within {timeout:.0f}s")


def _keep_load(client: workloads.LocalWorkload, stop: threading.Event) -> None:
    """Twenty requests a second at most from the client to podinfo until `stop`, so that
    `kubectl smi stat` and `split set` have live traffic to show during `--keep`."""
    order = {"url": f"http://podinfo.{NAMESPACE}.svc.cluster.local/echo", "count": 20}
    while not stop.wait(1.0):
        with contextlib.suppress(httpx.HTTPError):  # the workloads are stopping
            httpx.post(f"{client.app_url(8080)}/call", json=order, timeout=10)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM during `--keep` stops as Ctrl-C does: everything cleaned up."""
    raise KeyboardInterrupt


def _tour(console: Console, kubeconfig: str, kubectl_dir: str) -> None:
    console.print(
        "\n[bold]The mesh keeps running[/], the client calling podinfo all the time."
        " In another shell:\n"
        f"   export KUBECONFIG={kubeconfig} PATH=$PWD/.venv/bin:{kubectl_dir}:$PATH\n"
        f"   kubectl smi split get -n {NAMESPACE}\n"
        f"   kubectl smi split set podinfo podinfo-v1=80 podinfo-v2=20 -n {NAMESPACE}\n"
        f"   kubectl smi stat -n {NAMESPACE}        # the share moves to 80/20\n"
        f"   kubectl smi status -n {NAMESPACE}\n"
        "Press Ctrl-C here (or send SIGTERM) to stop everything.",
        soft_wrap=True,
    )


def _run(mesh: meshes.LocalMesh, console: Console, requests: int) -> workloads.LocalWorkload:
    mesh.namespace(NAMESPACE)
    mesh.service(NAMESPACE, "podinfo", {"app": "podinfo"})
    mesh.service(NAMESPACE, "podinfo-v1", {"app": "podinfo", "version": "v1"})
    mesh.service(NAMESPACE, "podinfo-v2", {"app": "podinfo", "version": "v2"})
    client = mesh.workload(NAMESPACE, "client-1", "client", {"app": "client"})
    v1 = mesh.workload(NAMESPACE, "podinfo-v1-1", "podinfo", {"app": "podinfo", "version": "v1"})
    v2 = mesh.workload(NAMESPACE, "podinfo-v2-1", "podinfo", {"app": "podinfo", "version": "v2"})
    table = Table(title=f"TrafficSplit podinfo: share of {requests} requests per step")
    for column in ("weights v1/v2", "programmed in", "v1 got", "v2 got", "failed"):
        table.add_column(column, justify="right")
    console.print(f"[bold]4.[/] walking a TrafficSplit through {len(STEPS)} canary steps")
    for w1, w2 in STEPS:
        mesh.apply(_split(w1, w2))
        took = _wait_programmed(mesh)
        before = (_received(v1, client), _received(v2, client))
        order = {
            "url": f"http://podinfo.{NAMESPACE}.svc.cluster.local/echo",
            "count": requests,
            "concurrency": 8,
        }
        tally = httpx.post(f"{client.app_url(8080)}/call", json=order, timeout=120).json()
        got = (_received(v1, client) - before[0], _received(v2, client) - before[1])
        row = (
            f"{w1}/{w2}",
            f"{took:.2f}s",
            f"{got[0] / requests:.0%}",
            f"{got[1] / requests:.0%}",
            str(tally["failed"]),
        )
        table.add_row(*row)
        console.print(f"   weights {row[0]:>7}: v1 {row[2]:>4}  v2 {row[3]:>4}  (failed {row[4]})")
    console.print(table)
    return client


def demo(
    requests: Annotated[int, typer.Option(min=50, max=5000, help="Requests per step.")] = 400,
    keep: Annotated[
        bool, typer.Option(help="Leave everything running until Ctrl-C, to explore it.")
    ] = False,
    keep_logs: Annotated[
        bool, typer.Option("--keep-logs", envvar=reaping.KEEP_LOGS_ENV, help=reaping.KEEP_LOGS_HELP)
    ] = False,
) -> None:
    """Run the main job: a canary TrafficSplit on a local mesh, with the measured share.

    Starts a local control plane (etcd + kube-apiserver as processes), the operator and three
    local workloads with sidecars. The first run builds kube-apiserver with Go (minutes).

    Example: smimesh demo --requests 1000
    """
    console = Console()
    reaping.keep_logs(keep_logs)

    def say(message: str) -> None:
        console.print(f"   [green]✔[/] {message}")

    try:
        found = binaries.ensure_binaries(say=lambda message: console.print(f"[dim]{message}[/]"))
        console.print("[bold]1.[/] starting the local control plane (etcd + kube-apiserver)")
        with controlplane.ControlPlane(found, say=say) as plane:
            console.print(f"   kubeconfig: {plane.kubeconfig}")
            cluster = clusters.Cluster("local", plane.kubeconfig, str(found.kubectl))
            console.print("[bold]2.[/] installing smimesh (CRDs, RBAC) and starting the operator")
            with meshes.LocalMesh(cluster, say=say) as mesh:
                console.print("[bold]3.[/] starting a client and podinfo v1 and v2 with sidecars")
                client = _run(mesh, console, requests)
                if keep:
                    stop = threading.Event()
                    load = threading.Thread(target=_keep_load, args=(client, stop), daemon=True)
                    load.start()
                    signal.signal(signal.SIGTERM, _interrupt)
                    _tour(console, str(plane.kubeconfig), str(found.kubectl.parent))
                    try:
                        while True:
                            time.sleep(3600)
                    except KeyboardInterrupt:
                        pass
                    finally:
                        stop.set()
                        load.join(timeout=15)
    except (
        binaries.BinariesError,
        controlplane.ControlPlaneError,
        meshes.MeshError,
        workloads.WorkloadError,
    ) as exc:
        hint = "" if keep_logs else "\n(the logs are removed: --keep-logs keeps them)"
        Console(stderr=True).print(f"[red]✖ {exc}[/]{hint}")
        raise typer.Exit(1) from None
    console.print(
        "stopped the workloads, the operator and the control plane; nothing left running"
        + ("" if keep_logs else " and no directory left")
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
