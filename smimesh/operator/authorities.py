"""The mesh CA's home: a Secret in the mesh namespace, created on first start or supplied by
the user (e.g. made by cert-manager), the `CaHolder` every part reads it from, and the trust
bundle published for workloads.

Called by `running` at start (`CaStore.load_or_create`); `maintaining` swaps the holder's CA
when the Secret changes (a rotation step, a renewed issuer). `TrustBundlePublisher.run`
(leader only) keeps ConfigMap `smimesh-trust-bundle` (key `ca.crt`) equal to the holder's
bundle in the mesh namespace and every namespace labelled for injection. The CA logic itself
is `smimesh.identity`; this module only moves its Secret data in and out of the API.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes import client

from smimesh._aio import waiting
from smimesh.compiler import state
from smimesh.identity import authority as authority_
from smimesh.identity import rotation, secretdata
from smimesh.kube import names
from smimesh.operator import indexing, leading

log = logging.getLogger(__name__)


class CaHolder:
    """The current mesh CA, read at use time: signers take `ca.active`, publishers `ca.bundle`.

    `generation` counts swaps, so a reader can tell cheaply (e.g. on every TLS handshake)
    whether what it built is stale; `wait_changed` wakes async readers. Swapped only from the
    event loop (by `maintaining`); reading `ca` from another thread sees the old or the new
    value, never a mix, since it is one reference.
    """

    def __init__(self, ca: rotation.MeshCa, data: Mapping[str, str] | None = None) -> None:
        self.ca = ca
        self.data: dict[str, str] = dict(data if data is not None else secretdata.dump(ca))
        """The Secret data (decoded) `ca` was loaded from: what `maintaining` compares."""
        self._swaps = waiting.Versioned(ca)

    @property
    def generation(self) -> int:
        return self._swaps.version

    def swap(self, ca: rotation.MeshCa, data: Mapping[str, str]) -> None:
        self.ca, self.data = ca, dict(data)
        self._swaps.set(ca)

    async def wait_changed(self, generation: int) -> None:
        """Until `generation` is stale (bound it with `asyncio.timeout`)."""
        await self._swaps.wait_newer(generation)


def decode(data: Mapping[str, str | bytes] | None) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (data or {}).items()}


def encode(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}


@dataclass
class CaStore:
    api: client.ApiClient
    namespace: str
    trust_domain: str
    secret_name: str = names.CA_SECRET

    def load_or_create(self) -> CaHolder:
        """Read the CA Secret; create a fresh CA if there is none (a racing replica's wins)."""
        core = client.CoreV1Api(self.api)
        try:
            secret = core.read_namespaced_secret(self.secret_name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        else:
            data = decode(secret.data)
            return CaHolder(secretdata.load(data, trust_domain=self.trust_domain), data)
        state = rotation.stable(authority_.create(self.trust_domain))
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=self.secret_name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/part-of": "smimesh"},
            ),
            type="Opaque",
            data=encode(secretdata.dump(state)),
        )
        try:
            core.create_namespaced_secret(self.namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            return self.load_or_create()
        log.info("created the mesh CA in Secret %s/%s", self.namespace, self.secret_name)
        return CaHolder(state)


@dataclass
class TrustBundlePublisher:
    """Keeps `smimesh-trust-bundle` current where workloads need it (leader only)."""

    api: client.ApiClient
    holder: CaHolder
    index: indexing.MeshIndex
    elector: leading.LeaderElector
    mesh_namespace: str = names.MESH_NAMESPACE

    def namespaces(self) -> list[str]:
        meshed = {
            value.name
            for value in self.index.objects.values()
            if isinstance(value, state.Namespace) and value.meshed
        }
        return sorted(meshed | {self.mesh_namespace})

    def publish(self, namespace: str, bundle: str) -> bool:
        """Create or update the ConfigMap to hold `bundle`; True if anything was written."""
        core = client.CoreV1Api(self.api)
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=names.TRUST_BUNDLE_CONFIGMAP,
                namespace=namespace,
                labels={"app.kubernetes.io/part-of": "smimesh"},
            ),
            data={names.TRUST_BUNDLE_KEY: bundle},
        )
        try:
            current = core.read_namespaced_config_map(names.TRUST_BUNDLE_CONFIGMAP, namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespaced_config_map(namespace, body)
            return True
        if (current.data or {}).get(names.TRUST_BUNDLE_KEY) == bundle:
            return False
        core.patch_namespaced_config_map(
            names.TRUST_BUNDLE_CONFIGMAP, namespace, {"data": body.data}
        )
        return True

    async def run(self, *, period: float = 5.0) -> None:
        """Publish the holder's bundle wherever the ConfigMap does not hold it yet, and again
        in every namespace when the bundle changes (tracked per namespace: what we wrote)."""
        published: dict[str, str] = {}
        leadership = self.elector.leadership
        while True:
            generation, seen = self.holder.generation, leadership.version
            if self.elector.is_leader:
                bundle = self.holder.ca.bundle.pem().decode()
                for namespace in self.namespaces():
                    if published.get(namespace) == bundle:
                        continue
                    try:
                        if await asyncio.to_thread(self.publish, namespace, bundle):
                            log.info("trust bundle published in %s", namespace)
                        published[namespace] = bundle
                    except client.ApiException as exc:
                        log.warning("trust bundle in %s: %s %s", namespace, exc.status, exc.reason)
            else:
                published.clear()
            # Wake at once when leadership or the CA changes, else look again after `period`.
            await waiting.first(
                leadership.wait_newer(seen), self.holder.wait_changed(generation), timeout=period
            )
