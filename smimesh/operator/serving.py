"""The config server: proxies open `ConfigDiscovery.Stream`, prove who they are, get the
whole scope of their resources at once and a delta whenever it changes, and ACK or NACK each
response by its nonce. A Hello must carry a token bound to the very Pod it names
(`authenticating.require_pod`).

Fed by `publishing.Publisher` (sessions and the deltas it sends them through a `GrpcSink`, the
gRPC `delivering.ConfigSink`) and `authenticating` (tokens); serves the `smimesh.proxyconfig`
gRPC contract with grpc.aio. Every replica serves config, leader or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from smimesh.operator import authenticating, delivering, publishing
from smimesh.proxyconfig import deltas, proxyconfig_pb2, proxyconfig_pb2_grpc, refs

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[proxyconfig_pb2.ProxyMessage, proxyconfig_pb2.ConfigDelta]


class GrpcSink(delivering.Mailbox):
    """The sink of one stream: the stream sends what the slot holds whenever it holds
    something (one delta at most waits: later ones merge into it)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_sent = 0

    async def next_message(self) -> proxyconfig_pb2.ConfigDelta:
        delta = await self.take()
        self.bytes_sent += delta.size()
        return deltas.to_message(delta)


class ConfigDiscovery(proxyconfig_pb2_grpc.ConfigDiscoveryServicer):
    def __init__(
        self, publisher: publishing.Publisher, authenticator: authenticating.Authenticator
    ) -> None:
        self.publisher = publisher
        self.authenticator = authenticator

    async def _hello(
        self,
        requests: AsyncIterator[proxyconfig_pb2.ProxyMessage],
        context: Context,
    ) -> refs.ProxyRef:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("kind") != "hello":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a Hello"
            )
        hello = first.hello
        try:
            caller = await self.authenticator.authenticate(hello.token)
        except authenticating.AuthenticationError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if (caller.namespace, caller.service_account) != (hello.namespace, hello.service_account):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token is for {caller.namespace}/{caller.service_account}, the Hello claims "
                f"{hello.namespace}/{hello.service_account}",
            )
        try:
            # The Pod too: else any workload of the ServiceAccount could claim another's
            # Pod and read its config (its allowed sources, its Services' endpoints).
            authenticating.require_pod(caller, hello.pod)
        except authenticating.PodClaimError as exc:
            log.warning("refused a Hello for %s/%s: %s", hello.namespace, hello.pod, exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        return refs.ProxyRef(
            namespace=hello.namespace, service_account=hello.service_account, pod=hello.pod
        )

    async def _read_acks(
        self,
        session: publishing.Session,
        requests: AsyncIterator[proxyconfig_pb2.ProxyMessage],
    ) -> None:
        async for message in requests:
            kind = message.WhichOneof("kind")
            if kind == "ack":
                session.ack(message.ack.nonce, message.ack.version)
            elif kind == "nack":
                session.nack(message.nack.nonce, message.nack.reason)
                log.warning(
                    "proxy %s refused delta %s: %s",
                    session.proxy,
                    message.nack.nonce,
                    message.nack.reason,
                )
            elif kind == "subscribe":  # on-demand scope (issue 11, item 3) is not served yet
                names = len(message.subscribe.names)
                log.info("proxy %s asked for %d more resources: ignored", session.proxy, names)

    async def Stream(  # noqa: N802 - the name is the gRPC method's
        self,
        request_iterator: AsyncIterator[proxyconfig_pb2.ProxyMessage],
        context: Context,
    ) -> AsyncIterator[proxyconfig_pb2.ConfigDelta]:
        proxy = await self._hello(request_iterator, context)
        sink = GrpcSink()
        session = self.publisher.attach(proxy, sink)
        log.info("proxy %s connected", proxy)
        reader = asyncio.create_task(self._read_acks(session, request_iterator))
        try:
            while not reader.done():
                message = asyncio.create_task(sink.next_message())
                await asyncio.wait({message, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not message.done():
                    message.cancel()
                    break
                yield message.result()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.publisher.detach(session)
            log.info("proxy %s disconnected", proxy)


async def start_server(
    servicer: ConfigDiscovery,
    certificates: proxyconfig_pb2_grpc.CertificatesServicer,
    *,
    address: str,
    credentials: grpc.ServerCredentials,
) -> tuple[grpc.aio.Server, int]:
    """Start the TLS gRPC server (config and certificates); returns it and its bound port."""
    server = grpc.aio.server()
    proxyconfig_pb2_grpc.add_ConfigDiscoveryServicer_to_server(servicer, server)
    proxyconfig_pb2_grpc.add_CertificatesServicer_to_server(certificates, server)
    port = server.add_secure_port(address, credentials)
    await server.start()
    return server, port
