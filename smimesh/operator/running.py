"""Assembles the operator: kopf watches -> index -> publisher -> config server, plus leader
election and the status writer, all owned by one task group.

Called by `smimesh.operator.__main__` (and by tests, in-process). Every replica watches and
serves config; only the Lease holder writes status and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client

from smimesh.compiler import state
from smimesh.kube import clients, names
from smimesh.operator import (
    authenticating,
    indexing,
    leading,
    publishing,
    serving,
    statuses,
    watching,
)
from smimesh.proxyconfig import snapshots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorSettings:
    namespace: str = names.MESH_NAMESPACE
    identity: str = f"{socket.gethostname()}-{os.getpid()}"
    grpc_address: str = "127.0.0.1:15010"
    lease_duration: float = 15.0
    lease_retry: float = 2.0
    mesh: snapshots.MeshSettings = field(default_factory=snapshots.MeshSettings)
    default_access: state.AccessMode = "permissive"


@dataclass
class Operator:
    """The running parts, exposed so tests and the CLI can look inside."""

    index: indexing.MeshIndex
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
    servicer = serving.ConfigDiscovery(publisher, authenticating.TokenReviewAuthenticator(api))
    elector = leading.LeaderElector(
        api,
        namespace=settings.namespace,
        identity=settings.identity,
        lease_duration=settings.lease_duration,
        retry_period=settings.lease_retry,
    )
    writer = statuses.StatusWriter(api, index, publisher, elector)
    server, port = await serving.start_server(servicer, address=settings.grpc_address)
    operator = Operator(index, publisher, servicer, elector, grpc_port=port)
    log.info("config server on port %d; identity %s", port, settings.identity)
    if started is not None:
        started.set_result(operator)
    try:
        async with asyncio.TaskGroup() as group:
            workers = [
                group.create_task(publisher.run()),
                group.create_task(elector.run()),
                group.create_task(writer.run(servicer.acks_changed)),
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
            await server.stop(grace=2.0)
        api.close()  # type: ignore[no-untyped-call]
