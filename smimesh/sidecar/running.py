"""The sidecar process: wires listeners, config sources and credentials around one
`context.Context`, applies snapshots, and drains on SIGTERM.

Started by `__main__` and `smimesh sidecar run`; owns every long-lived task in one TaskGroup.
`Sidecar.apply` is the `ConfigSink` that `loading` and `discovery` feed: it builds the new
`tables.Table` first and then swaps the single reference, so in-flight work keeps its table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable

import grpc

from smimesh.proxyconfig import refs, snapshots, workloads
from smimesh.sidecar import (
    admin,
    certifying,
    clusters,
    context,
    discovery,
    draining,
    endpoints,
    forwarding,
    inbound,
    listeners,
    loading,
    metrics,
    outbound,
    probing,
    settings,
    tables,
)

log = logging.getLogger(__name__)


class Sidecar:
    def __init__(
        self,
        config: settings.SidecarSettings,
        *,
        credentials: context.Credentials | None = None,
    ) -> None:
        self.settings = config
        self.registry = clusters.Registry(config.limits, config.outliers)
        connector = endpoints.TcpConnector(
            timeout=config.limits.connect_timeout,
            mark=config.upstream_mark,
            tls_for=self._tls_for,
            identify=credentials.peer_identity if credentials is not None else None,
        )
        proxy = config.proxy
        me = workloads.Workload()
        if proxy is not None:
            me = workloads.Workload.of_pod(
                proxy.namespace, proxy.pod, config.workload_kind, config.workload_name
            )
        self.ctx = context.Context(
            settings=config,
            telemetry=metrics.Telemetry(max_series=config.max_metric_series),
            drain=draining.Drain(),
            connector=connector,
            forwarder=forwarding.Forwarder(connector, config.limits),
            credentials=credentials,
            me=me,
        )
        self.outbound = outbound.Outbound(self.ctx)
        self.inbound = inbound.Inbound(self.ctx)
        self.admin = admin.Admin(self.ctx)
        self.inbound_listeners: dict[int, listeners.Listener] = {}
        self._inbound_changed = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ports: dict[str, int] = {}
        self._group: asyncio.TaskGroup | None = None
        self.file_source: loading.FileSource | None = None

    def _listener(
        self, name: str, host: str, port: int, handler: listeners.ConnectionHandler
    ) -> listeners.Listener:
        """Every listener with the connection cap of `settings.Limits`."""
        return listeners.Listener(
            name, host, port, handler,
            max_connections=self.settings.limits.max_connections_per_listener,
            on_refused=self.ctx.telemetry.connection_refused,
        )  # fmt: skip

    def _tls_for(self, address: endpoints.Address) -> ssl.SSLContext | None:
        """mTLS to meshed endpoints unless the mesh disabled it (or we hold no certificate)."""
        credentials = self.ctx.credentials
        if not address.meshed or credentials is None or self.ctx.mtls_mode() == "disabled":
            return None
        return credentials.client_context()

    # -- ConfigSink ---------------------------------------------------------------------------

    def apply(self, config: snapshots.ProxyConfig) -> None:
        proxy = self.settings.proxy
        if proxy is not None and config.proxy != proxy:
            raise ValueError(f"config is for {config.proxy}, this proxy is {proxy}")
        table = tables.build(config, self.registry, self.settings)
        if proxy is None:  # learn who we are from the config (metrics labels)
            kind, name = self.settings.workload_kind, self.settings.workload_name
            self.ctx.me = workloads.Workload.of_pod(
                config.proxy.namespace, config.proxy.pod, kind, name
            )
        me = self.ctx.me
        self.ctx.tracer.configure(
            config.settings.tracing_endpoint, service=f"{me.name}.{me.namespace}", pod=me.pod
        )
        self.ctx.table = table  # the swap: one reference
        self.registry.prune()
        self._inbound_changed.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    async def run(self, *, ready: Callable[[dict[str, int]], None] | None = None) -> None:
        """Serve until `stop()` (or SIGTERM/SIGINT when installed), then drain and return."""
        config = self.settings
        bound: list[listeners.Listener] = []
        admin_listener = self._listener(
            "admin", config.admin_host, config.admin_port, self.admin.connection
        )
        self.ports["admin"] = admin_listener.port
        data_listeners = [
            self._listener(
                "outbound",
                config.outbound_host,
                config.outbound_port,
                self.outbound.transparent_connection
                if config.interception == "transparent"
                else self.outbound.proxy_connection,
            )
        ]
        self.ports["outbound"] = data_listeners[0].port
        for local in config.local_services:
            data_listeners.append(
                self._listener(
                    f"local:{local.local_port}",
                    config.outbound_host,
                    local.local_port,
                    _bind_port(self.outbound.local_connection, local.local_port),
                )
            )
        if config.interception == "transparent":
            data_listeners.append(
                self._listener(
                    "inbound", config.inbound_host, config.inbound_port,
                    self.inbound.transparent_connection,
                )
            )  # fmt: skip
            self.ports["inbound"] = data_listeners[-1].port
        bound = [admin_listener, *data_listeners]
        if config.probe_port is not None:
            probes = probing.Probes(self.ctx, config.app_probes)
            probe_listener = self._listener(
                "probes", config.probe_host, config.probe_port, probes.connection
            )
            self.ports["probes"] = probe_listener.port
            bound.append(probe_listener)
        if config.metrics_port is not None:  # /metrics, /ready, /live only: for Prometheus
            scraped = self._listener(
                "metrics", config.metrics_host, config.metrics_port, self.admin.metrics_connection
            )
            self.ports["metrics"] = scraped.port
            bound.append(scraped)
        async with asyncio.TaskGroup() as group:
            self._group = group
            background = [group.create_task(item.serve()) for item in bound]
            if config.config_file is not None:
                self.file_source = loading.FileSource(
                    config.config_file, self, poll_seconds=config.config_poll_seconds
                )
                background.append(group.create_task(self.file_source.run()))
            if config.config_server is not None and config.proxy is not None:
                client = discovery.DiscoveryClient(
                    config.config_server,
                    self,
                    hello=discovery.Hellos(config),
                    credentials=self._operator_credentials
                    if config.trust_bundle_file is not None
                    else None,
                )
                background.append(group.create_task(client.run()))
            if config.interception == "explicit":
                background.append(group.create_task(self._reconcile_inbound()))
            if ready is not None:
                ready(dict(self.ports))
            await self.stopping.wait()
            await self._drain(data_listeners)
            for task in background:
                task.cancel()
            for item in bound[:1] + bound[1 + len(data_listeners) :]:  # admin and probes
                item.stop()
                await item.connections.cancel()
            await self.outbound.h2.close()
            await self.inbound.h2.close()
        self.registry.close()
        self.outbound.egress.close()
        self.ctx.tracer.shutdown()

    def _operator_credentials(self) -> grpc.ChannelCredentials:
        """TLS to the config server: the mesh roots as of now (see `certifying`)."""
        assert self.settings.trust_bundle_file is not None
        issued = self.ctx.credentials
        if isinstance(issued, certifying.IssuedCredentials):
            return issued.operator_credentials()
        return certifying.channel_credentials(self.settings.trust_bundle_file)

    async def _drain(self, data_listeners: list[listeners.Listener]) -> None:
        """Refuse new connections, let in-flight requests finish (bounded), then cut."""
        log.info("draining for up to %.1fs", self.settings.drain_seconds)
        self.ctx.drain.start()
        every = [*data_listeners, *self.inbound_listeners.values()]
        for item in every:
            item.stop()
        waits = [item.connections.wait(self.settings.drain_seconds) for item in every]
        finished = await asyncio.gather(*waits)
        log.info("drained (%s)", "clean" if all(finished) else "some connections cut")

    async def _reconcile_inbound(self) -> None:
        """Explicit mode: bind each inbound port of the current snapshot, release old ones."""
        assert self._group is not None
        while True:
            await self._inbound_changed.wait()
            self._inbound_changed.clear()
            table = self.ctx.table
            wanted = set(table.inbound) if table is not None else set()
            for port in set(self.inbound_listeners) - wanted:
                self.inbound_listeners.pop(port).stop()
            for port in wanted - set(self.inbound_listeners):
                try:
                    item = self._listener(
                        f"inbound:{port}",
                        self.settings.inbound_host,
                        port,
                        _bind_port(self.inbound.port_connection, port),
                    )
                except OSError as exc:
                    log.error("cannot bind inbound port %d: %s", port, exc)
                    continue
                self.inbound_listeners[port] = item
                self._group.create_task(item.serve())


def _bind_port(
    handler: Callable[[socket.socket, int], Awaitable[None]], port: int
) -> listeners.ConnectionHandler:
    async def bound(conn: socket.socket) -> None:
        await handler(conn, port)

    return bound


def install_signals(sidecar: Sidecar) -> None:
    """SIGTERM/SIGINT drain and stop; SIGHUP reloads the config file."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, sidecar.stop)
    loop.add_signal_handler(signal.SIGINT, sidecar.stop)

    def reload() -> None:
        if sidecar.file_source is not None:
            sidecar.file_source.reload.set()

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, reload)


def proxy_ref(namespace: str, service_account: str, pod: str) -> refs.ProxyRef:
    return refs.ProxyRef(namespace=namespace, service_account=service_account, pod=pod)
