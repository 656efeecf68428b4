"""Finding meshed pods and asking their sidecars over plain HTTP on the pod IP: the
metrics-only port (15090: `/metrics`, `/`), the way Prometheus scrapes it, and the admin port
(15000: `/config`, `/identity`).

Used by the command modules `stats` (`stat`, `top`), `proxies` (`proxy config`, `identity`)
and `versioning` (`version`). A pod is meshed when it carries the annotation
`smimesh.dev/injected` (the injector and local workloads set it). An injected sidecar's admin
port listens on 127.0.0.1 inside the pod, and serves `/config` only when started with
`--admin-config`: reach it with `kubectl port-forward POD 15000` and `--admin-address
127.0.0.1`. Local workloads bind it on their address. Never imports `smimesh.sidecar`: the
endpoints are the contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from kubernetes import client

from smimesh.cli import connecting
from smimesh.kube import names

ADMIN_PORT = names.SIDECAR_ADMIN_PORT
"""The sidecar's admin port (`smimesh sidecar run --admin-port`, the injector's default)."""
METRICS_PORT = names.SIDECAR_METRICS_PORT
"""The sidecar's metrics-only port (`--metrics-port`; injected pods and local workloads)."""
ADMIN_TIMEOUT = 3.0
"""Seconds to wait for one admin endpoint before calling the sidecar unreachable."""
PARALLEL = 16

AdminPort = Annotated[
    int, typer.Option("--admin-port", help="The sidecars' admin port.", min=1, max=65535)
]
MetricsPort = Annotated[
    int,
    typer.Option("--metrics-port", help="The sidecars' metrics-only port.", min=1, max=65535),
]
AdminAddress = Annotated[
    str | None,
    typer.Option(
        "--admin-address",
        help="Ask the admin port here instead of on the pod IP, e.g. 127.0.0.1 after "
        "`kubectl port-forward POD 15000` (an injected sidecar's admin port is loopback only).",
    ),
]


class AdminError(RuntimeError):
    """A sidecar's admin endpoint did not answer, or not with 200."""


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    meshed: bool
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _pod(item: client.V1Pod) -> Pod:
    meta = item.metadata or client.V1ObjectMeta()
    return Pod(
        namespace=str(meta.namespace or ""),
        name=str(meta.name or ""),
        ip=str((item.status.pod_ip if item.status else None) or ""),
        meshed=names.INJECTED_ANNOTATION in (meta.annotations or {}),
        labels=dict(meta.labels or {}),
    )


def list_pods(api: client.ApiClient, namespace: str | None) -> list[Pod]:
    """Every pod in `namespace` (None: all), meshed or not, sorted by namespace and name."""
    core = client.CoreV1Api(api)
    timeout = connecting.REQUEST_TIMEOUT
    listed = (
        core.list_pod_for_all_namespaces(_request_timeout=timeout)
        if namespace is None
        else core.list_namespaced_pod(namespace, _request_timeout=timeout)
    )
    return sorted((_pod(item) for item in listed.items), key=lambda p: (p.namespace, p.name))


def meshed_pod(api: client.ApiClient, namespace: str, name: str) -> Pod:
    """The named pod, if it exists, is meshed and has an IP; else exit 1 saying which not."""
    try:
        item = client.CoreV1Api(api).read_namespaced_pod(
            name, namespace, _request_timeout=connecting.REQUEST_TIMEOUT
        )
    except client.ApiException as exc:
        if exc.status == 404:
            connecting.fail(f"pod {name!r} not found in namespace {namespace!r}", connecting.FAILED)
        raise
    pod = _pod(item)
    if not pod.meshed:
        connecting.fail(
            f"pod {pod} is not meshed (no {names.INJECTED_ANNOTATION} annotation)",
            connecting.FAILED,
        )
    if not pod.ip:
        connecting.fail(f"pod {pod} has no IP yet", connecting.FAILED)
    return pod


def admin_url(pod: Pod, path: str, *, port: int = ADMIN_PORT, address: str | None = None) -> str:
    where = address or pod.ip
    host = f"[{where}]" if ":" in where else where
    return f"http://{host}:{port}{path}"


def get(
    pod: Pod,
    path: str,
    *,
    port: int = ADMIN_PORT,
    timeout: float = ADMIN_TIMEOUT,
    address: str | None = None,
) -> str:
    """The body of `GET path` on the pod's sidecar (at `address` if given); raises AdminError."""
    url = admin_url(pod, path, port=port, address=address)
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise AdminError(f"{pod}: {url}: {type(exc).__name__}: {exc or 'no answer'}") from exc
    if response.status_code != 200:
        raise AdminError(f"{pod}: {url}: {response.status_code} {response.text.strip()[:200]}")
    return response.text


def get_json(pod: Pod, path: str, *, port: int = ADMIN_PORT, address: str | None = None) -> Any:
    """`get`, parsed as JSON; raises AdminError when the body is not JSON."""
    text = get(pod, path, port=port, address=address)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AdminError(f"{pod}: {path} did not answer JSON: {exc}") from exc


def get_all(
    pods: Sequence[Pod], path: str, *, port: int = ADMIN_PORT
) -> dict[Pod, str | AdminError]:
    """`get` on every pod at once (a bounded thread pool); failures are returned, not raised."""

    def one(pod: Pod) -> str | AdminError:
        try:
            return get(pod, path, port=port)
        except AdminError as exc:
            return exc

    if not pods:
        return {}
    with ThreadPoolExecutor(min(PARALLEL, len(pods))) as pool:
        return dict(zip(pods, pool.map(one, pods), strict=True))
