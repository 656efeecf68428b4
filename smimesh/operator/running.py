"""Assembles the operator: kopf watches -> index -> publisher -> config server, plus leader
election, the status writer, the mesh CA's maintenance (rotation, issuer renewal; every part
reads the CA from one `authorities.CaHolder`), and the HTTPS server of the webhooks and the
TrafficMetrics API, all owned by one task group.

Called by `smimesh.operator.__main__` (and by tests, in-process). Every replica watches and
serves config; only the Lease holder writes status and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client

import smimesh
from smimesh.compiler import state
from smimesh.identity import authority
from smimesh.kube import clients, names
from smimesh.operator import (
    aggregating,
    authenticating,
    authorities,
    certificates,
    delegating,
    indexing,
    leading,
    maintaining,
    publishing,
    renewing,
    rotating,
    scraping,
    serving,
    statuses,
    watching,
    webhooking,
)
from smimesh.proxyconfig import snapshots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorSettings:
    namespace: str = names.MESH_NAMESPACE
    identity: str = f"{socket.gethostname()}-{os.getpid()}"
    grpc_address: str = "127.0.0.1:15010"
    webhook_address: str = "0.0.0.0:9443"
    webhook_url: str | None = None
    """Local mode: the apiserver calls `<url>/convert` etc. instead of the operator Service."""
    lease_duration: float = 15.0
    lease_retry: float = 2.0
    mesh: snapshots.MeshSettings = field(default_factory=snapshots.MeshSettings)
    default_access: state.AccessMode = "permissive"
    workload_cert_lifetime: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME
    sidecar_metrics_port: int = scraping.METRICS_PORT
    """Where the TrafficMetrics API scrapes sidecars' `/metrics`."""
    ca_period: float = maintaining.DEFAULT_PERIOD
    """Seconds between two looks at the CA Secret (rotation steps happen on these rounds)."""
    ca_auto_rotate_before: datetime.timedelta = rotating.DEFAULT_AUTO_ROTATE_BEFORE
    ca_drain_margin: datetime.timedelta = authority.BACKDATE
    proxy_image: str = f"{names.IMAGE_REPOSITORY}:{smimesh.__version__}"
    """The image the injector gives the proxy and init containers (the mesh's one image)."""

    def rotation_policy(self) -> rotating.Policy:
        return rotating.Policy(
            propagation=self.workload_cert_lifetime,
            max_leaf_lifetime=self.workload_cert_lifetime,
            drain_margin=self.ca_drain_margin,
            auto_rotate_before=self.ca_auto_rotate_before,
        )


@dataclass
class Operator:
    """The running parts, exposed so tests and the CLI can look inside."""

    index: indexing.MeshIndex
    holder: authorities.CaHolder
    publisher: publishing.Publisher
    servicer: serving.ConfigDiscovery
    elector: leading.LeaderElector
    grpc_port: int = 0


def _connection(api: client.ApiClient) -> kopf.ConnectionInfo:
    """kopf's credentials from the very client configuration the operator loaded, so both
    talk to the same cluster as the same user (one loading path: `smimesh.kube.clients`)."""
    config = api.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def _grpc_certificate(
    holder: authorities.CaHolder, settings: OperatorSettings
) -> renewing.ServingCertificate:
    """The config server's certificate: the operator Service's names and the listen address."""
    host = settings.grpc_address.rpartition(":")[0].strip("[]")
    dns = tuple(renewing.service_names(settings.namespace))
    try:
        ipaddress.ip_address(host)
        ips: tuple[str, ...] = ("127.0.0.1",) if host in ("0.0.0.0", "::") else (host,)
    except ValueError:
        dns, ips = (*dns, host), ()
    return renewing.ServingCertificate(holder, dns_names=dns, ip_addresses=ips)


def _registry(index: indexing.MeshIndex, api: client.ApiClient) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _connection(api)

    watching.register(registry, index)
    return registry


def _kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # our Events come from `statuses`, with our reasons
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5]
    return settings


async def run(
    settings: OperatorSettings,
    *,
    stop: asyncio.Event | None = None,
    started: asyncio.Future[Operator] | None = None,
) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM, which kopf handles)."""
    stop = stop or asyncio.Event()
    api = clients.api_client(None)
    index = indexing.MeshIndex(settings=settings.mesh, default_access=settings.default_access)
    publisher = publishing.Publisher(index)
    authenticator = authenticating.TokenReviewAuthenticator(api)
    servicer = serving.ConfigDiscovery(publisher, authenticator)
    store = authorities.CaStore(api, settings.namespace, settings.mesh.trust_domain)
    holder = await asyncio.to_thread(store.load_or_create)
    elector = leading.LeaderElector(
        api,
        namespace=settings.namespace,
        identity=settings.identity,
        lease_duration=settings.lease_duration,
        retry_period=settings.lease_retry,
    )
    writer = statuses.StatusWriter(api, index, publisher, elector)
    bundles = authorities.TrustBundlePublisher(
        api, holder, index, elector, mesh_namespace=settings.namespace
    )
    maintainer = maintaining.CaMaintainer(
        api,
        holder,
        elector,
        settings.namespace,
        settings.mesh.trust_domain,
        policy=settings.rotation_policy(),
        period=settings.ca_period,
    )
    server, port = await serving.start_server(
        servicer,
        certificates.Certificates(holder, authenticator, lifetime=settings.workload_cert_lifetime),
        address=settings.grpc_address,
        credentials=renewing.grpc_credentials(
            await asyncio.to_thread(_grpc_certificate, holder, settings)
        ),
    )
    front_proxy = await asyncio.to_thread(delegating.load, api)
    scraper = scraping.Scraper(port=settings.sidecar_metrics_port)
    metrics_api = aggregating.MetricsApi(
        index, scraper, delegating.Authorizer(api), front_proxy=front_proxy
    )
    try:
        webhooks = await webhooking.serve(
            api,
            holder,
            index,
            namespace=settings.namespace,
            address=settings.webhook_address,
            url=settings.webhook_url,
            trust_domain=settings.mesh.trust_domain,
            grpc_address=f"{settings.grpc_address.rpartition(':')[0]}:{port}",
            front_proxy=front_proxy,
            mounts=(metrics_api.mount,),
            proxy_image=settings.proxy_image,
        )
    except BaseException:
        await server.stop(grace=None)
        await scraper.close()
        raise
    log.info("webhooks on port %d", webhooks.port)
    operator = Operator(index, holder, publisher, servicer, elector, grpc_port=port)
    log.info("config server on port %d; identity %s", port, settings.identity)
    if started is not None:
        started.set_result(operator)
    try:
        async with asyncio.TaskGroup() as group:
            workers = [
                group.create_task(publisher.run()),
                group.create_task(elector.run()),
                group.create_task(writer.run()),
                group.create_task(bundles.run()),
                group.create_task(maintainer.run()),
                group.create_task(webhooks.run()),
            ]
            await kopf.operator(
                registry=_registry(index, api),
                settings=_kopf_settings(),
                clusterwide=True,
                standalone=True,
                stop_flag=stop,
            )
            for worker in workers:
                worker.cancel()
    finally:
        # grpc's shutdown may surface the cancellation of its own accept loop; we are
        # stopping anyway, so neither that nor a late error may hide the real exit reason.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await webhooks.stop()
            await scraper.close()
            await server.stop(grace=2.0)
        api.close()  # type: ignore[no-untyped-call]
