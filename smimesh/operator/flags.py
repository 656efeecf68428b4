"""The operator's command line: every flag of `python -m smimesh.operator` (its name, aliases,
environment variable, default and help) as the parameters of `settings`, which checks their
values and builds the `running.OperatorSettings` that `running.run` takes.

`smimesh.operator.__main__` makes these parameters its typer command's flags; `settings` does
no I/O, so tests call it directly.
"""

from __future__ import annotations

import datetime
import enum
from typing import Annotated

import typer

from smimesh.operator import running

# The dataclass's class attributes are its field defaults.
_DEFAULT = running.OperatorSettings


class Access(enum.StrEnum):
    """The access mode of namespaces without the smimesh.dev/access-mode annotation."""

    permissive = "permissive"
    strict = "strict"


def settings(
    *,
    kubeconfig: Annotated[
        str | None,
        typer.Option(help="kubeconfig file (default: in-cluster or $KUBECONFIG)"),
    ] = None,
    namespace: Annotated[
        str, typer.Option(envvar="SMIMESH_NAMESPACE", help="the namespace smimesh runs in")
    ] = _DEFAULT.namespace,
    grpc_address: Annotated[
        str, typer.Option(help="host:port of the config server")
    ] = _DEFAULT.grpc_address,
    webhook_address: Annotated[
        str,
        typer.Option(help="host:port of the HTTPS webhooks (conversion, validation, injection)"),
    ] = _DEFAULT.webhook_address,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="local mode: the apiserver calls https://HOST:PORT/convert etc. instead of the "
            "operator Service (for a control plane without Service routing)"
        ),
    ] = None,
    identity: Annotated[
        str, typer.Option(envvar="POD_NAME", help="this replica's name in the leader Lease")
    ] = _DEFAULT.identity,
    lease_duration: Annotated[
        float, typer.Option(help="seconds before a silent leader is replaced")
    ] = 15.0,
    access: Annotated[
        Access,
        typer.Option(
            help="access mode of namespaces without the smimesh.dev/access-mode annotation"
        ),
    ] = Access.permissive,
    workload_cert_lifetime: Annotated[
        float, typer.Option(help="seconds a workload certificate lives (sidecars renew at 70 %)")
    ] = 24 * 3600,
    sidecar_metrics_port: Annotated[
        int,
        typer.Option(
            "--sidecar-metrics-port",
            "--sidecar-admin-port",  # its old name
            help="the sidecars' metrics-only port, scraped for the TrafficMetrics API",
        ),
    ] = _DEFAULT.sidecar_metrics_port,
    ca_period: Annotated[
        float,
        typer.Option(help="seconds between looks at the CA Secret: rotation steps, issuer renewal"),
    ] = _DEFAULT.ca_period,
    ca_auto_rotate_days: Annotated[
        float,
        typer.Option(
            help="rotate the root without being asked once it has fewer days left (0: never)"
        ),
    ] = _DEFAULT.ca_auto_rotate_before / datetime.timedelta(days=1),
    ca_drain_margin: Annotated[
        float,
        typer.Option(
            help="seconds the old root stays trusted after its last leaf expired (slow clocks)"
        ),
    ] = _DEFAULT.ca_drain_margin.total_seconds(),
    proxy_image: Annotated[
        str,
        typer.Option(
            envvar="SMIMESH_PROXY_IMAGE",
            help="the image injected proxy and init containers run (default: this operator's "
            "own image, which holds the sidecar too)",
        ),
    ] = _DEFAULT.proxy_image,
) -> running.OperatorSettings:
    """The settings these flags say; a value out of range is a usage error (exit code 2).
    `kubeconfig` is not a setting: `__main__` exports it as $KUBECONFIG for the clients."""
    if workload_cert_lifetime < 10:
        raise typer.BadParameter("--workload-cert-lifetime must be at least 10 seconds")
    if ca_period <= 0 or ca_auto_rotate_days < 0 or ca_drain_margin < 0:
        raise typer.BadParameter(
            "--ca-period must be positive, the other --ca-* values not negative"
        )
    return running.OperatorSettings(
        namespace=namespace,
        identity=identity,
        grpc_address=grpc_address,
        webhook_address=webhook_address,
        webhook_url=webhook_url,
        lease_duration=lease_duration,
        lease_retry=max(0.5, lease_duration / 5),
        default_access=access.value,
        workload_cert_lifetime=datetime.timedelta(seconds=workload_cert_lifetime),
        sidecar_metrics_port=sidecar_metrics_port,
        ca_period=ca_period,
        ca_auto_rotate_before=datetime.timedelta(days=ca_auto_rotate_days),
        ca_drain_margin=datetime.timedelta(seconds=ca_drain_margin),
        proxy_image=proxy_image,
    )
