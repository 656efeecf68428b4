"""The arguments of `smimesh sidecar init`, which installs the iptables redirection.

Called by `initcontainers`; reads the proxy's ports and user from settings and the per-pod
exclusions from annotations, validating them so that a typo is an admission error, not a pod
whose traffic silently bypasses (or never reaches) the proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from smimesh.kube import names
from smimesh.webhooks.injection import errors, settings


def init_arguments(
    pod_annotations: Mapping[str, str], config: settings.InjectionSettings
) -> list[str]:
    """`--flag value` pairs for the init container, in a stable order."""
    ports = config.ports
    # kubelet reaches the probe port, and Prometheus the metrics port, without interception
    # (the admin port binds loopback; it stays excluded for a sidecar run with --admin-host).
    requested = _ports(pod_annotations, names.EXCLUDE_INBOUND_PORTS_ANNOTATION)
    inbound_excluded = [ports.admin, ports.probes, ports.metrics, *requested]
    arguments = [
        "--proxy-uid",
        str(config.proxy_uid),
        "--inbound-port",
        str(ports.inbound),
        "--outbound-port",
        str(ports.outbound),
        "--exclude-inbound-ports",
        _join(inbound_excluded),
    ]
    outbound_excluded = _ports(pod_annotations, names.EXCLUDE_OUTBOUND_PORTS_ANNOTATION)
    if outbound_excluded:
        arguments += ["--exclude-outbound-ports", _join(outbound_excluded)]
    cidrs = _cidrs(pod_annotations)
    if cidrs:
        arguments += ["--exclude-outbound-cidrs", ",".join(cidrs)]
    return arguments


def _join(ports: list[int]) -> str:
    return ",".join(str(port) for port in sorted(set(ports)))


def _items(pod_annotations: Mapping[str, str], key: str) -> list[str]:
    return [item.strip() for item in pod_annotations.get(key, "").split(",") if item.strip()]


def _ports(pod_annotations: Mapping[str, str], key: str) -> list[int]:
    ports = []
    for item in _items(pod_annotations, key):
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise errors.InjectionError(
                f"annotation {key}: {item!r} is not a port (1-65535); "
                "expected a comma-separated list such as '5432,6379'"
            )
        ports.append(int(item))
    return ports


def _cidrs(pod_annotations: Mapping[str, str]) -> list[str]:
    cidrs = []
    for item in _items(pod_annotations, names.EXCLUDE_OUTBOUND_CIDRS_ANNOTATION):
        try:
            cidrs.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise errors.InjectionError(
                f"annotation {names.EXCLUDE_OUTBOUND_CIDRS_ANNOTATION}: {item!r} is not an IP "
                "range; "
                "expected a comma-separated list such as '10.0.0.0/8,192.168.1.5/32'"
            ) from None
    return cidrs
