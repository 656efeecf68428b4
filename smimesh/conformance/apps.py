"""Handles on the test apps' own endpoints (`/call`, `/metrics` of `testapp`): how the suite
reaches one app without going through the mesh, so a strict mesh never blocks the suite's
own control traffic.

`stages` talks to every app through the `App` protocol only. `LocalApp` reaches a local
workload's app at its address directly; `PodApp` goes through the kube-apiserver's pod proxy
(`/api/v1/namespaces/NS/pods/NAME:PORT/proxy/...`) to the app's control port, which the mesh
profile (`profiles`) excludes from interception. Built by `stages.Stage.build` (local) and
`deploying` (a cluster).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from kubernetes import client

from smimesh.testing import workloads

MESH_PORT = 8080
"""The port the test app serves mesh traffic on (Services' target port)."""
CONTROL_PORT = 9090
"""The port the suite's own requests use on Pods; excluded from interception."""


class AppError(RuntimeError):
    """An app's endpoint could not be reached or did not answer 2xx; the message says which."""


class App(Protocol):
    """One test app, as the suite sees it."""

    @property
    def caller(self) -> str:
        """`namespace/name`: how the app names itself to others (`x-smimesh-caller`)."""
        ...

    def request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, timeout: float
    ) -> Any:
        """Send `body` as JSON to the app's own `path`; the JSON answer."""
        ...


@dataclass(frozen=True)
class LocalApp:
    """A local workload's app, at its own port on the workload's address."""

    workload: workloads.LocalWorkload

    @property
    def caller(self) -> str:
        return f"{self.workload.spec.namespace}/{self.workload.spec.name}"

    def request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, timeout: float
    ) -> Any:
        url = f"{self.workload.app_url(MESH_PORT)}{path}"
        try:
            response = httpx.request(method, url, json=body, timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise AppError(f"{method} {url}: {exc}") from exc
        return response.json()


@dataclass(frozen=True)
class PodApp:
    """A Pod's app, through the apiserver's pod proxy to its control port: works wherever
    the suite can reach the apiserver, whatever the network between it and the Pods."""

    api: client.ApiClient
    namespace: str
    pod: str
    port: int = CONTROL_PORT

    @property
    def caller(self) -> str:
        return f"{self.namespace}/{self.pod}"

    def path(self, path: str) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}:{self.port}/proxy{path}"

    def request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, timeout: float
    ) -> Any:
        where = self.path(path)
        try:
            # param_serialize authenticates as the kubeconfig says (certificates, tokens).
            method, url, headers, data, _ = self.api.param_serialize(
                method,
                where,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, headers, data, _request_timeout=timeout)
            raw: bytes = response.read()  # type: ignore[no-untyped-call]
        except Exception as exc:  # urllib3's transport errors have no common base we import
            raise AppError(f"{method} {where}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status <= 299:
            text = raw.decode(errors="replace")[:500]
            raise AppError(f"{method} {where}: {response.status} {response.reason}: {text}")
        return json.loads(raw)
