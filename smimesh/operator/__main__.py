"""`python -m smimesh.operator`: run the operator with settings from flags and environment.

Uses the in-cluster ServiceAccount, or $KUBECONFIG / --kubeconfig outside a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import sys

from smimesh.kube import clients
from smimesh.operator import running


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m smimesh.operator", description=__doc__)
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster or $KUBECONFIG)")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("SMIMESH_NAMESPACE", running.OperatorSettings.namespace),
    )
    parser.add_argument(
        "--grpc-address",
        default=running.OperatorSettings.grpc_address,
        help="host:port of the config server",
    )
    parser.add_argument(
        "--webhook-address",
        default=running.OperatorSettings.webhook_address,
        help="host:port of the HTTPS webhooks (conversion, validation, injection)",
    )
    parser.add_argument(
        "--webhook-url",
        help="local mode: the apiserver calls https://HOST:PORT/convert etc. instead of the "
        "operator Service (for a control plane without Service routing)",
    )
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME", running.OperatorSettings.identity),
        help="this replica's name in the leader Lease",
    )
    parser.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        help="seconds before a silent leader is replaced",
    )
    parser.add_argument(
        "--access",
        choices=["permissive", "strict"],
        default="permissive",
        help="access mode of namespaces without the smimesh.dev/access-mode annotation",
    )
    parser.add_argument(
        "--workload-cert-lifetime",
        type=float,
        default=24 * 3600,
        help="seconds a workload certificate lives (sidecars renew at 70 %%)",
    )
    parser.add_argument(
        "--sidecar-metrics-port",
        "--sidecar-admin-port",  # its old name
        dest="sidecar_metrics_port",
        type=int,
        default=running.OperatorSettings.sidecar_metrics_port,
        help="the sidecars' metrics-only port, scraped for the TrafficMetrics API",
    )
    parser.add_argument(
        "--ca-period",
        type=float,
        default=running.OperatorSettings.ca_period,
        help="seconds between looks at the CA Secret: rotation steps, issuer renewal",
    )
    parser.add_argument(
        "--ca-auto-rotate-days",
        type=float,
        default=running.OperatorSettings.ca_auto_rotate_before / datetime.timedelta(days=1),
        help="rotate the root without being asked once it has fewer days left (0: never)",
    )
    parser.add_argument(
        "--ca-drain-margin",
        type=float,
        default=running.OperatorSettings.ca_drain_margin.total_seconds(),
        help="seconds the old root stays trusted after its last leaf expired (slow clocks)",
    )
    args = parser.parse_args()
    if args.workload_cert_lifetime < 10:
        parser.error("--workload-cert-lifetime must be at least 10 seconds")
    if args.ca_period <= 0 or args.ca_auto_rotate_days < 0 or args.ca_drain_margin < 0:
        parser.error("--ca-period must be positive, the other --ca-* values not negative")
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kopf reports every handled watch event at INFO: one line per object change.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = running.OperatorSettings(
        namespace=args.namespace,
        identity=args.identity,
        grpc_address=args.grpc_address,
        webhook_address=args.webhook_address,
        webhook_url=args.webhook_url,
        lease_duration=args.lease_duration,
        lease_retry=max(0.5, args.lease_duration / 5),
        default_access=args.access,
        workload_cert_lifetime=datetime.timedelta(seconds=args.workload_cert_lifetime),
        sidecar_metrics_port=args.sidecar_metrics_port,
        ca_period=args.ca_period,
        ca_auto_rotate_before=datetime.timedelta(days=args.ca_auto_rotate_days),
        ca_drain_margin=datetime.timedelta(seconds=args.ca_drain_margin),
    )
    try:
        asyncio.run(running.run(settings))
    except clients.NoClusterError as exc:
        sys.exit(f"smimesh operator: {exc}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
