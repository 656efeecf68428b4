"""`kubectl smi proxy config POD` and `kubectl smi identity POD`: what one sidecar holds right
now, asked from the sidecar itself (admin `/config` and `/identity`), not from the operator.

Registered by `smimesh.cli.main`; reaches the pod through `smimesh.cli.meshedpods`. The
config is the compiled proxy config the sidecar swapped in last (it carries no keys); the
identity is its certificate's SPIFFE id and validity (never the certificate or the key).
"""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from smimesh.cli import connecting, meshedpods, rendering

PodName = Annotated[str, typer.Argument(help="The meshed pod.", show_default=False)]


class DocumentFormat(StrEnum):
    json = "json"
    yaml = "yaml"


app = typer.Typer(
    help="Look inside one sidecar (its admin endpoint).", no_args_is_help=True, add_completion=False
)


def _pod(
    pod: str, namespace: str | None, kubeconfig: connecting.Kubeconfig, context: connecting.Context
) -> meshedpods.Pod:
    where = namespace or connecting.default_namespace(kubeconfig, context)
    with connecting.api_client(kubeconfig, context) as api:
        connecting.require_reachable(api)
        return meshedpods.meshed_pod(api, where, pod)


HINT = (
    "an injected sidecar's admin port listens on 127.0.0.1 in the pod: run `kubectl "
    "port-forward -n {namespace} {name} {port}` and pass --admin-address 127.0.0.1"
)


def _ask(found: meshedpods.Pod, path: str, port: int, address: str | None) -> Any:
    try:
        return meshedpods.get_json(found, path, port=port, address=address)
    except meshedpods.AdminError as exc:
        hint = HINT.format(namespace=found.namespace, name=found.name, port=port)
        if " 403 " in str(exc):
            hint = "the sidecar serves /config only when started with --admin-config"
        elif address is not None:
            hint = ""
        connecting.fail(
            f"the sidecar did not answer: {exc}" + (f"\nhint: {hint}" if hint else ""),
            connecting.FAILED,
        )


def config(
    pod: PodName,
    namespace: connecting.Namespace = None,
    output: Annotated[
        DocumentFormat,
        typer.Option("--output", "-o", help="json or yaml.", case_sensitive=False),
    ] = DocumentFormat.json,
    admin_port: meshedpods.AdminPort = meshedpods.ADMIN_PORT,
    admin_address: meshedpods.AdminAddress = None,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Print the proxy config the pod's sidecar is using now (its admin /config).

    This is the compiled config the operator pushed and the sidecar applied last: listeners,
    routes, clusters, endpoints and its version. It holds no keys or certificates, but it
    lists who may call the pod and every endpoint it calls, so the sidecar serves it only when
    started with --admin-config, on its admin port (127.0.0.1 in an injected pod: use
    `kubectl port-forward POD 15000` and --admin-address 127.0.0.1).
    Exit code 0 when shown, 1 if the pod is missing, not meshed or its sidecar does not
    answer (or holds no config yet), 2 if the cluster cannot be reached.

    Example: kubectl smi proxy config web-7d4b9c-x2x8k -n shop -o yaml
    """
    found = _pod(pod, namespace, kubeconfig, context)
    current = _ask(found, "/config", admin_port, admin_address)
    if current is None:
        connecting.fail(f"the sidecar of {found} holds no config yet", connecting.FAILED)
    rendering.documents(current, rendering.Format(output.value))


def _when(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def _left(seconds: float) -> str:
    if seconds <= 0:
        return "EXPIRED"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes}m" if hours else f"{minutes}m"


def identity(
    pod: PodName,
    namespace: connecting.Namespace = None,
    output: rendering.Output = rendering.Format.table,
    admin_port: meshedpods.AdminPort = meshedpods.ADMIN_PORT,
    admin_address: meshedpods.AdminAddress = None,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Show the pod's mTLS identity: its certificate's SPIFFE id and validity.

    Read from the sidecar's admin /identity: the SPIFFE id (from the pod's ServiceAccount),
    when the certificate became valid and expires, and when the sidecar renews it (empty when
    mounted files are rotated by someone else). An expired certificate is shown as EXPIRED.
    Exit code 0 when shown, 1 if the pod is missing, not meshed or its sidecar does not
    answer (or has no certificate yet), 2 if the cluster cannot be reached.

    Example: kubectl smi identity web-7d4b9c-x2x8k -n shop -o json
    """
    found = _pod(pod, namespace, kubeconfig, context)
    reported = _ask(found, "/identity", admin_port, admin_address)
    try:
        not_after = _when(reported["not_after"])
        renew_at = _when(reported.get("renew_at"))
        data = {
            "namespace": found.namespace,
            "pod": found.name,
            "spiffeId": str(reported["spiffe_id"]),
            "notBefore": str(reported["not_before"]),
            "notAfter": str(reported["not_after"]),
            "renewAt": reported.get("renew_at"),
            "source": reported.get("source", ""),
        }
    except (KeyError, TypeError, ValueError) as exc:
        connecting.fail(
            f"the sidecar of {found} answered an unknown /identity: {exc}", connecting.FAILED
        )
    now = datetime.datetime.now(datetime.UTC)
    left = (not_after - now).total_seconds() if not_after else 0.0
    data["expiresInSeconds"] = max(0, int(left))
    if output is not rendering.Format.table:
        rendering.documents(data, output)
        return
    rendering.table(
        ["pod", "identity", "not after", "expires in", "renew at", "source"],
        [
            [
                found.name,
                data["spiffeId"],
                data["notAfter"],
                _left(left),
                renew_at.isoformat() if renew_at else "-",
                str(data["source"]),
            ]
        ],
    )


def register(main: typer.Typer) -> None:
    app.command("config")(connecting.guarded(config))
    main.add_typer(app, name="proxy")
    main.command("identity")(connecting.guarded(identity))
