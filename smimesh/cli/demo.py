"""`smimesh demo`: the main job on the embedded local control plane, step by step.

Starts etcd + kube-apiserver (`smimesh.testing.controlplane`), installs `smimesh/manifests/`,
runs the operator and three local workloads (a client and two versions of `podinfo` behind one
Service) with sidecars, applies a TrafficSplit and walks it through a canary's weights,
measuring the share each version really gets. `--cluster node` runs the same walk on real
Pods (`nodedemo`); both stages hand the walk `conformance.apps` handles of the three apps.
Registered by `smimesh.cli.main`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from smimesh.cli import nodedemo
from smimesh.conformance import apps
from smimesh.testing import binaries, clusters, controlplane, meshes, reaping, workloads


class DemoError(RuntimeError):
    """A step of the walk failed; the message says which."""


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


def _received(target: apps.App, caller: apps.App) -> int:
    metrics = target.request("GET", "/metrics", timeout=10)
    return int(metrics["received"].get(caller.caller, 0))


def _wait_programmed(cluster: clusters.Cluster, timeout: float = 30.0) -> float:
    """Seconds until the split's Programmed condition covers its newest generation."""
    started = time.monotonic()
    path = "{.metadata.generation} {.status.conditions[?(@.type=='Programmed')].status}"
    path += " {.status.conditions[?(@.type=='Programmed')].observedGeneration}"
    while time.monotonic() - started < timeout:
        found = cluster.kubectl(
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
    raise DemoError(f"the TrafficSplit was not Programmed within {timeout:.0f}s")


def _keep_load(client: apps.App, stop: threading.Event) -> None:
    """Twenty requests a second at most from the client to podinfo until `stop`, so that
    `kubectl smi stat` and `split set` have live traffic to show during `--keep`."""
    order = {"url": f"http://podinfo.{NAMESPACE}.svc.cluster.local/echo", "count": 20}
    while not stop.wait(1.0):
        with contextlib.suppress(apps.AppError):  # the workloads are stopping
            client.request("POST", "/call", body=order, timeout=10)


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


def _local_stage(mesh: meshes.LocalMesh) -> nodedemo.Stage:
    """The client and podinfo v1/v2 as local workloads of the embedded control plane."""
    mesh.namespace(NAMESPACE)
    mesh.service(NAMESPACE, "podinfo", {"app": "podinfo"})
    mesh.service(NAMESPACE, "podinfo-v1", {"app": "podinfo", "version": "v1"})
    mesh.service(NAMESPACE, "podinfo-v2", {"app": "podinfo", "version": "v2"})
    client, v1, v2 = (
        apps.LocalApp(mesh.workload(NAMESPACE, name, account, labels))
        for name, account, labels in nodedemo.PODS
    )
    return nodedemo.Stage(mesh.cluster, client, v1, v2)


def _walk(stage: nodedemo.Stage, console: Console, requests: int) -> None:
    client, v1, v2 = stage.client, stage.v1, stage.v2
    table = Table(title=f"TrafficSplit podinfo: share of {requests} requests per step")
    for column in ("weights v1/v2", "programmed in", "v1 got", "v2 got", "failed"):
        table.add_column(column, justify="right")
    for w1, w2 in STEPS:
        applied = stage.cluster.kubectl("apply", "-f", "-", input=json.dumps(_split(w1, w2)))
        if applied.returncode != 0:
            raise DemoError(f"applying the TrafficSplit: {applied.stderr.strip()}")
        took = _wait_programmed(stage.cluster)
        before = (_received(v1, client), _received(v2, client))
        order = {
            "url": f"http://podinfo.{NAMESPACE}.svc.cluster.local/echo",
            "count": requests,
            "concurrency": 8,
        }
        tally = client.request("POST", "/call", body=order, timeout=120)
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


Where = Literal["local", "node"]


def demo(
    requests: Annotated[int, typer.Option(min=50, max=5000, help="Requests per step.")] = 400,
    cluster: Annotated[
        Where,
        typer.Option(
            "--cluster",
            help="local: the embedded control plane, workloads as local processes. node: a "
            "real node (root, a source checkout): the image built here, installed with "
            "kubectl smi install, the workloads as injected Pods.",
        ),
    ] = "local",
    keep: Annotated[
        bool, typer.Option(help="Leave everything running until Ctrl-C, to explore it.")
    ] = False,
    keep_logs: Annotated[
        bool, typer.Option("--keep-logs", envvar=reaping.KEEP_LOGS_ENV, help=reaping.KEEP_LOGS_HELP)
    ] = False,
) -> None:
    """Run the main job: a canary TrafficSplit on a local mesh, with the measured share.

    Starts a local control plane (etcd + kube-apiserver as processes), the operator and three
    local workloads with sidecars; with --cluster node, a real node running them as Pods. The
    first run builds kube-apiserver with Go (minutes; the node's tools and images too).

    Example: smimesh demo --requests 1000        (or: sudo smimesh demo --cluster node)
    """
    console = Console()
    reaping.keep_logs(keep_logs)
    steps = itertools.count(1)

    def say(message: str) -> None:
        console.print(f"   [green]✔[/] {message}")

    def step(message: str) -> None:
        console.print(f"[bold]{next(steps)}.[/] {message}")

    try:
        with _stage(cluster, say=say, step=step, console=console) as stage:
            step(f"walking a TrafficSplit through {len(STEPS)} canary steps")
            _walk(stage, console, requests)
            if keep:
                _keep(stage, console)
    except (
        binaries.BinariesError,
        controlplane.ControlPlaneError,
        meshes.MeshError,
        workloads.WorkloadError,
        nodedemo.NodeDemoError,
        apps.AppError,
        DemoError,
    ) as exc:
        hint = "" if keep_logs else "\n(the logs are removed: --keep-logs keeps them)"
        Console(stderr=True).print(f"[red]✖ {exc}[/]{hint}")
        raise typer.Exit(1) from None
    what = "the workloads" if cluster == "local" else "the Pods, the node"
    console.print(
        f"stopped {what}, the operator and the control plane; nothing left running"
        + ("" if keep_logs else " and no directory left")
    )


@contextlib.contextmanager
def _stage(
    where: Where, *, say: Callable[[str], None], step: Callable[[str], None], console: Console
) -> Iterator[nodedemo.Stage]:
    if where == "node":
        with nodedemo.running(NAMESPACE, say=say, step=step) as stage:
            console.print(f"   kubeconfig: {stage.cluster.kubeconfig}")
            yield stage
        return
    found = binaries.ensure_binaries(say=lambda message: console.print(f"[dim]{message}[/]"))
    step("starting the local control plane (etcd + kube-apiserver)")
    with controlplane.ControlPlane(found, say=say) as plane:
        console.print(f"   kubeconfig: {plane.kubeconfig}")
        cluster = clusters.Cluster("local", plane.kubeconfig, str(found.kubectl))
        step("installing smimesh (CRDs, RBAC) and starting the operator")
        with meshes.LocalMesh(cluster, say=say) as mesh:
            step("starting a client and podinfo v1 and v2 with sidecars")
            yield _local_stage(mesh)


def _keep(stage: nodedemo.Stage, console: Console) -> None:
    stop = threading.Event()
    load = threading.Thread(target=_keep_load, args=(stage.client, stop), daemon=True)
    load.start()
    signal.signal(signal.SIGTERM, _interrupt)
    kubectl = Path(stage.cluster.kubectl_binary).parent
    _tour(console, str(stage.cluster.kubeconfig), str(kubectl))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        load.join(timeout=15)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
