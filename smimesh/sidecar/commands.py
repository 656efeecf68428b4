"""The sidecar's commands: `run` (the proxy) and `init` (the iptables rules of transparent
interception, what the injected init container runs).

Registered as `smimesh sidecar ...` by `smimesh.cli.sidecars` and run directly by
`python -m smimesh.sidecar`; builds `settings.SidecarSettings` from flags and hands it to
`running.Sidecar` (on uvloop when available). Thin: no logic of its own.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from smimesh._aio import waiting
from smimesh.sidecar import (
    certifying,
    credentials,
    listeners,
    probing,
    running,
    settings,
    transparent,
)

app = typer.Typer(
    name="sidecar",
    help="The smimesh sidecar proxy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        return asyncio.run

    def run(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)

    return run


@app.command("run")
def run(
    config: Annotated[
        Path | None, typer.Option("--config", help="ProxyConfig JSON file (reloaded).")
    ] = None,
    config_server: Annotated[
        str | None,
        typer.Option(
            help="host:port of the operator's config server.", envvar="SMIMESH_CONTROL_PLANE"
        ),
    ] = None,
    namespace: str = typer.Option(
        "", help="This proxy's pod namespace.", envvar="SMIMESH_POD_NAMESPACE"
    ),
    service_account: str = typer.Option(
        "", help="This proxy's ServiceAccount.", envvar="SMIMESH_SERVICE_ACCOUNT"
    ),
    pod: str = typer.Option("", help="This proxy's pod name.", envvar="SMIMESH_POD_NAME"),
    token_file: Annotated[
        Path | None, typer.Option(help="ServiceAccount token for the config server.")
    ] = None,
    interception: str = typer.Option(
        "explicit", help="explicit | transparent", envvar="SMIMESH_INTERCEPTION"
    ),
    outbound_host: str = typer.Option("127.0.0.1"),
    outbound_port: int = typer.Option(
        settings.OUTBOUND_PORT, help="HTTP proxy / redirect port.", envvar="SMIMESH_OUTBOUND_PORT"
    ),
    inbound_host: str = typer.Option("0.0.0.0"),
    inbound_port: int = typer.Option(
        settings.INBOUND_PORT, help="Transparent inbound port.", envvar="SMIMESH_INBOUND_PORT"
    ),
    admin_host: str = typer.Option(
        "127.0.0.1",
        help="Where the full admin listener binds (loopback: only this pod reaches it).",
        envvar="SMIMESH_ADMIN_HOST",
    ),
    admin_port: int = typer.Option(
        settings.ADMIN_PORT,
        help="The admin port: /ready /live /metrics /identity, and /config with --admin-config.",
        envvar="SMIMESH_ADMIN_PORT",
    ),
    admin_config: bool = typer.Option(
        False,
        "--admin-config",
        envvar="SMIMESH_ADMIN_CONFIG",
        help="Serve /config (allowed sources, outbound endpoints) on the admin port.",
    ),
    metrics_host: str = typer.Option("0.0.0.0", envvar="SMIMESH_METRICS_HOST"),
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help=f"A metrics-only listener (/metrics /ready /live) for Prometheus, e.g. "
            f"{settings.METRICS_PORT}.",
            envvar="SMIMESH_METRICS_PORT",
        ),
    ] = None,
    max_metric_series: int = typer.Option(
        settings.MAX_METRIC_SERIES, min=1, help="Label sets per metric; then one overflow series."
    ),
    probe_host: str = typer.Option("0.0.0.0", help="Where the kubelet probe listener binds."),
    app_host: str = typer.Option("127.0.0.1", help="Where the local app listens."),
    probe_port: Annotated[
        int | None,
        typer.Option(
            help="Kubelet probes: /ready /live /app-health/...", envvar="SMIMESH_PROBE_PORT"
        ),
    ] = None,
    app_probes: Annotated[
        str, typer.Option(help="The app's original probes (JSON).", envvar="SMIMESH_APP_PROBES")
    ] = "",
    local_service: Annotated[
        list[str] | None,
        typer.Option(help="LOCALPORT=namespace/name:port, a local port forwarding to one Service."),
    ] = None,
    cert: Annotated[Path | None, typer.Option(help="PEM certificate chain (leaf first).")] = None,
    key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    trust_bundle: Annotated[Path | None, typer.Option(help="PEM roots to trust.")] = None,
    trust_domain: str = typer.Option("cluster.local", envvar="SMIMESH_TRUST_DOMAIN"),
    mark: Annotated[
        int | None, typer.Option(help="SO_MARK for upstream sockets (transparent mode).")
    ] = None,
    drain_seconds: float = typer.Option(20.0, help="How long SIGTERM waits for in-flight work."),
    workload_kind: str = typer.Option("", help="Metrics: this pod's workload kind."),
    workload_name: str = typer.Option("", help="Metrics: this pod's workload name."),
    merge_slashes: bool = typer.Option(
        False,
        help="Path normalization: also merge repeated slashes (//) before matching and forwarding.",
        envvar="SMIMESH_MERGE_SLASHES",
    ),
    max_connections: int = typer.Option(
        settings.Limits.max_connections_per_listener,
        help="Open connections per listener; new ones past it are closed at once.",
    ),
    h2_max_streams: int = typer.Option(
        settings.Limits.h2_max_streams, help="HTTP/2 concurrent streams per connection."
    ),
    h2_reset_burst: int = typer.Option(
        settings.Limits.h2_reset_burst,
        help="HTTP/2 resets and refused streams a connection may cause at once before "
        "GOAWAY ENHANCE_YOUR_CALM (refilled at --h2-reset-rate per second).",
    ),
    h2_reset_rate: float = typer.Option(settings.Limits.h2_reset_rate),
    h2_idle_timeout: float = typer.Option(
        settings.Limits.h2_idle_timeout,
        help="Seconds an HTTP/2 connection with no open stream stays before GOAWAY (0: never).",
    ),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Run the proxy until SIGTERM, then drain.

    Example: smimesh sidecar run --config proxy.json --namespace shop --service-account web
    --pod web-1 --local-service 9080=shop/checkout:80
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if interception not in ("explicit", "transparent"):
        raise typer.BadParameter("--interception must be explicit or transparent")
    if config is None and not config_server:
        typer.echo(
            "error: no config source: give --config FILE (a ProxyConfig JSON file) or "
            "--config-server HOST:PORT (or $SMIMESH_CONTROL_PLANE; the injector sets it)",
            err=True,
        )
        raise typer.Exit(2)
    if config_server and token_file is not None and trust_bundle is None:
        # The token proves our ServiceAccount: over plaintext anyone on the path could use it.
        typer.echo(
            "error: --config-server with --token-file needs --trust-bundle (the mesh roots): "
            "the ServiceAccount token is only ever sent to the config server over TLS",
            err=True,
        )
        raise typer.Exit(2)
    proxy = None
    if namespace and service_account and pod:
        proxy = running.proxy_ref(namespace, service_account, pod)
    try:
        locals_ = tuple(settings.LocalService.parse(item) for item in local_service or ())
        originals = probing.parse(app_probes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    built = settings.SidecarSettings(
        proxy=proxy,
        interception=interception,  # type: ignore[arg-type]
        outbound_host=outbound_host,
        outbound_port=outbound_port,
        inbound_host=inbound_host,
        inbound_port=inbound_port,
        admin_host=admin_host,
        admin_port=admin_port,
        admin_config=admin_config,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        max_metric_series=max_metric_series,
        probe_host=probe_host,
        app_host=app_host,
        probe_port=probe_port,
        app_probes=originals,
        local_services=locals_,
        config_file=config,
        config_server=config_server,
        token_file=token_file,
        cert_file=cert,
        key_file=key,
        trust_bundle_file=trust_bundle,
        trust_domain=trust_domain,
        upstream_mark=mark,
        drain_seconds=drain_seconds,
        workload_kind=workload_kind,
        workload_name=workload_name,
        merge_slashes=merge_slashes,
        limits=settings.Limits(
            max_connections_per_listener=max_connections,
            h2_max_streams=h2_max_streams,
            h2_reset_burst=h2_reset_burst,
            h2_reset_rate=h2_reset_rate,
            h2_idle_timeout=h2_idle_timeout,
        ),
    )
    _event_loop_runner()(_main(built))


def _credentials(
    built: settings.SidecarSettings,
) -> credentials.FileCredentials | certifying.IssuedCredentials | None:
    """Certificate files if given; else, with a config server, a token and the mesh roots,
    certificates issued by the mesh CA; else none (plaintext)."""
    files = credentials.from_settings(built)
    if files is not None:
        return files
    if (
        built.config_server is not None
        and built.proxy is not None
        and built.token_file is not None
        and built.trust_bundle_file is not None
    ):
        return certifying.IssuedCredentials(
            target=built.config_server,
            proxy=built.proxy,
            token_file=built.token_file,
            trust_bundle_file=built.trust_bundle_file,
            trust_domain=built.trust_domain,
        )
    return None


async def _main(built: settings.SidecarSettings) -> None:
    listeners.raise_descriptor_limit()
    files = _credentials(built)
    sidecar = running.Sidecar(built, credentials=files)
    running.install_signals(sidecar)

    def announce(ports: dict[str, int]) -> None:
        listed = " ".join(f"{name}={port}" for name, port in sorted(ports.items()))
        print(f"smimesh sidecar listening: {listed}", flush=True)

    async with asyncio.TaskGroup() as group:
        watcher = group.create_task(files.watch()) if files is not None else None
        if isinstance(files, certifying.IssuedCredentials):
            # Serve nothing (and so report not ready) until the mesh CA issued our identity.
            await files.issued.wait()
        await sidecar.run(ready=announce)
        if watcher is not None:
            watcher.cancel()


@app.command("init")
def init(
    outbound_port: int = typer.Option(settings.OUTBOUND_PORT),
    inbound_port: int = typer.Option(settings.INBOUND_PORT),
    mark: Annotated[
        int | None, typer.Option(help="Exempt sockets with this mark (`run --mark`).")
    ] = settings.PROXY_MARK,
    proxy_uid: Annotated[
        int | None, typer.Option(help="Also exempt this uid's traffic (the proxy's).")
    ] = None,
    exclude_inbound_ports: Annotated[
        str, typer.Option(help="Comma-separated inbound ports not redirected (admin, probes).")
    ] = f"{settings.ADMIN_PORT},{settings.METRICS_PORT}",
    exclude_outbound_ports: Annotated[
        str, typer.Option(help="Comma-separated outbound ports not redirected.")
    ] = "",
    exclude_outbound_cidrs: Annotated[
        str, typer.Option(help="Comma-separated destination CIDRs not redirected.")
    ] = "",
    dry_run: bool = typer.Option(False, help="Print the iptables commands instead."),
) -> None:
    """Write the iptables rules of transparent interception in this network namespace.

    Example: smimesh sidecar init --exclude-inbound-port 15090 --dry-run
    """
    rules = transparent.rules(
        outbound_port=outbound_port,
        inbound_port=inbound_port,
        mark=mark,
        proxy_uid=proxy_uid,
        exclude_inbound_ports=_ports(exclude_inbound_ports),
        exclude_outbound_ports=_ports(exclude_outbound_ports),
        exclude_outbound_cidrs=[c.strip() for c in exclude_outbound_cidrs.split(",") if c.strip()],
    )
    if dry_run:
        for rule in rules:
            typer.echo(" ".join(["iptables", *rule]))
        return
    try:
        transparent.apply(rules)
    except FileNotFoundError:
        typer.echo("iptables is not installed", err=True)
        raise typer.Exit(1) from None
    except subprocess.CalledProcessError as exc:
        typer.echo(f"iptables {' '.join(exc.cmd[1:])}: {exc.stderr.strip()}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{len(rules)} iptables rules written", file=sys.stdout)


def _ports(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated ports, got {text!r}") from None


@app.command("wait-ready")
def wait_ready(
    admin_port: int = typer.Option(settings.ADMIN_PORT, envvar="SMIMESH_ADMIN_PORT"),
    within: float = typer.Option(120.0, help="Give up after this many seconds."),
) -> None:
    """Block until the local sidecar's /ready answers 200 (a postStart hook runs this).

    Example: smimesh sidecar wait-ready --within 60
    """
    url = f"http://127.0.0.1:{admin_port}/ready"
    try:
        waiting.eventually_sync(
            lambda: httpx.get(url, timeout=1.0).status_code == 200,
            timeout=within,
            message=f"sidecar not ready after {within:g}s",
            interval=0.2,
            ignoring=(httpx.HTTPError,),
        )
    except waiting.WaitTimeoutError:
        typer.echo(f"sidecar not ready after {within:g}s", err=True)
        raise typer.Exit(1) from None
