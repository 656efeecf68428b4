"""The mesh CA's home: a Secret in the mesh namespace, created on first start or supplied by
the user (e.g. made by cert-manager), and the trust bundle published for workloads.

Called by `running` at start (`CaStore.load_or_create`) and by `TrustBundlePublisher.run`
(leader only) which keeps ConfigMap `smimesh-trust-bundle` (key `ca.crt`) current in the mesh
namespace and every namespace labelled for injection. The CA logic itself is
`smimesh.identity`; this module only moves its Secret data in and out of the API.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes import client

from smimesh.identity import authority as authority_
from smimesh.identity import rotation, secretdata
from smimesh.kube import names
from smimesh.operator import indexing, leading

log = logging.getLogger(__name__)

SECRET_NAME = "smimesh-ca"
BUNDLE_CONFIGMAP = "smimesh-trust-bundle"
BUNDLE_KEY = "ca.crt"


def _decode(data: Mapping[str, str | bytes] | None) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (data or {}).items()}


def _encode(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}


@dataclass
class CaStore:
    api: client.ApiClient
    namespace: str
    trust_domain: str
    secret_name: str = SECRET_NAME

    def load_or_create(self) -> rotation.MeshCa:
        """Read the CA Secret; create a fresh CA if there is none (a racing replica's wins)."""
        core = client.CoreV1Api(self.api)
        try:
            secret = core.read_namespaced_secret(self.secret_name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        else:
            return secretdata.load(_decode(secret.data), trust_domain=self.trust_domain)
        state = rotation.stable(authority_.create(self.trust_domain))
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=self.secret_name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/part-of": "smimesh"},
            ),
            type="Opaque",
            data=_encode(secretdata.dump(state)),
        )
        try:
            core.create_namespaced_secret(self.namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            return self.load_or_create()
        log.info("created the mesh CA in Secret %s/%s", self.namespace, self.secret_name)
        return state


@dataclass
class TrustBundlePublisher:
    """Keeps `smimesh-trust-bundle` current where workloads need it (leader only)."""

    api: client.ApiClient
    ca: rotation.MeshCa
    index: indexing.MeshIndex
    elector: leading.LeaderElector
    mesh_namespace: str = names.MESH_NAMESPACE

    def namespaces(self) -> list[str]:
        meshed = {
            value.name
            for field, value in self.index.objects.values()
            if field == "namespaces" and value.meshed
        }
        return sorted(meshed | {self.mesh_namespace})

    def publish(self, namespace: str) -> bool:
        """Create or update the ConfigMap; True if anything was written."""
        core = client.CoreV1Api(self.api)
        bundle = self.ca.bundle.pem().decode()
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=BUNDLE_CONFIGMAP,
                namespace=namespace,
                labels={"app.kubernetes.io/part-of": "smimesh"},
            ),
            data={BUNDLE_KEY: bundle},
        )
        try:
            current = core.read_namespaced_config_map(BUNDLE_CONFIGMAP, namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespaced_config_map(namespace, body)
            return True
        if (current.data or {}).get(BUNDLE_KEY) == bundle:
            return False
        core.patch_namespaced_config_map(BUNDLE_CONFIGMAP, namespace, {"data": body.data})
        return True

    async def run(self, *, period: float = 5.0) -> None:
        published: set[str] = set()
        while True:
            if self.elector.is_leader:
                for namespace in self.namespaces():
                    if namespace in published:
                        continue
                    try:
                        await asyncio.to_thread(self.publish, namespace)
                        published.add(namespace)
                    except client.ApiException as exc:
                        log.warning("trust bundle in %s: %s %s", namespace, exc.status, exc.reason)
            else:
                published.clear()
            # Wake at once when leadership changes, else look again after `period`.
            changed = asyncio.ensure_future(self.elector.changed.wait())
            await asyncio.wait({changed}, timeout=period)
            changed.cancel()
