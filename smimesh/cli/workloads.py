"""`smimesh workload run`: a process outside Kubernetes joins the mesh as a local workload
(its own address, a sidecar with a mesh-CA identity, registered as a Pod behind its
Services), until Ctrl-C; with `--netns`, in a network namespace of its own with transparent
interception. Registered by `smimesh.cli.main`; the work is
`smimesh.testing.workloads`.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from kubernetes import client
from rich.console import Console

from smimesh.kube import clients, names
from smimesh.testing import isolating, reaping, workloads

app = typer.Typer(help="Workloads outside Kubernetes (processes on this host).")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must be KEY=VALUE, got {item!r}")
        found[key] = value
    return found


def _trust_bundle(api: client.ApiClient) -> bytes:
    """The mesh roots, as the operator publishes them (ConfigMap smimesh-trust-bundle)."""
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(
            names.TRUST_BUNDLE_CONFIGMAP, names.MESH_NAMESPACE
        )
    except client.ApiException as exc:
        raise workloads.WorkloadError(
            f"no trust bundle in {names.MESH_NAMESPACE}/{names.TRUST_BUNDLE_CONFIGMAP} "
            f"({exc.status} {exc.reason}): is the operator running?"
        ) from None
    return str((found.data or {}).get(names.TRUST_BUNDLE_KEY, "")).encode()


@app.command("run")
def run(
    command: Annotated[list[str], typer.Argument(help="The app to run, after `--`.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    service_account: Annotated[str, typer.Option(help="Its identity in the mesh.")] = "default",
    labels: Annotated[
        list[str] | None, typer.Option("--labels", "-l", help="k=v; Services select on these.")
    ] = None,
    port: Annotated[
        list[str] | None,
        typer.Option(
            help="TARGET=APP: callers use the Service's target port, the app listens "
            "on APP (repeatable). Default 8080=18080."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Pod name (default: generated).")] = None,
    config_server: Annotated[
        str | None, typer.Option(help="host:port of the operator's config server.")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option()] = None,
    netns: Annotated[
        bool,
        typer.Option(
            "--netns",
            help="Run app and sidecar in a network namespace of their own; iptables sends the "
            "app's connections through the sidecar (no proxy settings). Needs root and iptables.",
        ),
    ] = False,
    keep_logs: Annotated[
        bool, typer.Option("--keep-logs", envvar=reaping.KEEP_LOGS_ENV, help=reaping.KEEP_LOGS_HELP)
    ] = False,
) -> None:
    """Run COMMAND as a meshed workload until Ctrl-C; its Pod is removed afterwards.

    The app gets HOST (its address), PORT and HTTP_PROXY (its sidecar) in its environment;
    with --netns it gets HOST=0.0.0.0 and PORT only, and calls Services by name
    (http://NAME.NAMESPACE.svc.cluster.local/), which resolve to their ClusterIPs.

    Example: smimesh workload run -n shop --service-account web -l app=web
    --config-server 127.0.0.1:15010 -- sh -c 'python -m http.server --bind $HOST $PORT'
    """
    err = Console(stderr=True)
    reaping.keep_logs(keep_logs)
    if config_server is None:
        err.print("[red]--config-server is required (the operator's gRPC address)[/]")
        raise typer.Exit(2)
    try:
        ports = {int(k): int(v) for k, v in _pairs(port or ["8080=18080"], "--port").items()}
    except ValueError:
        err.print("[red]--port must be TARGET=APP with two port numbers[/]")
        raise typer.Exit(2) from None
    if netns and (reason := isolating.unsupported()) is not None:
        err.print(f"[red]✖ --netns cannot run here: {reason}[/]")
        raise typer.Exit(1)
    try:
        api = clients.api_client(kubeconfig)
        bundle = _trust_bundle(api)
        workload = workloads.LocalWorkload(
            workloads.WorkloadSpec(
                namespace=namespace,
                name=name or f"{service_account}-{uuid.uuid4().hex[:6]}",
                service_account=service_account,
                command=command,
                labels=_pairs(labels or [], "--labels"),
                app_ports=ports,
                isolation="netns" if netns else "address",
            ),
            api=api,
            config_server=config_server,
            trust_bundle=bundle,
        )
        workload.start()
    except (clients.NoClusterError, workloads.WorkloadError, client.ApiException) as exc:
        hint = "" if keep_logs else "\n(the logs are removed: --keep-logs keeps them)"
        err.print(f"[red]✖ {exc}[/]{hint}")
        raise typer.Exit(1) from None
    inside = f" in network namespace {workload.netns.name}" if workload.netns else ""
    err.print(
        f"[green]✔[/] {namespace}/{workload.spec.name} at {workload.address}{inside} "
        f"(behind {', '.join(workload.services) or 'no Service yet'}); Ctrl-C stops it",
        soft_wrap=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        while all(process.poll() is None for process in workload.processes.values()):
            time.sleep(0.5)
        err.print("[yellow]the app or its sidecar exited[/]")
    except KeyboardInterrupt:
        pass
    finally:
        workload.stop()
        err.print("stopped and unregistered")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="workload")
