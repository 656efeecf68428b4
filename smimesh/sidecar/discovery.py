"""The config client: `ConfigDiscovery.Stream` to the operator's config server. Sends a Hello
with the proxy's identity, applies each snapshot, ACKs it, NACKs (with the reason) one it
cannot parse or apply, and reconnects with backoff; the last good config stays in force
throughout, so traffic continues while the operator is down.

Started by `running` when `--config-server` is set; feeds the same `loading.ConfigSink` as the
config file. Speaks only `smimesh.proxyconfig`'s generated gRPC code. Every stream starts with a
fresh Hello whose token is read from its file (`tokens`) at that moment, and a token is never
sent over a plaintext channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc

import smimesh
from smimesh._aio import backoff
from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.proxyconfig import proxyconfig_pb2_grpc as pb_grpc
from smimesh.proxyconfig import snapshots
from smimesh.sidecar import loading, settings, tokens

log = logging.getLogger(__name__)


def hello_for(config: settings.SidecarSettings, token: str = "") -> pb.Hello:
    assert config.proxy is not None
    return pb.Hello(
        namespace=config.proxy.namespace,
        service_account=config.proxy.service_account,
        pod=config.proxy.pod,
        token=token,
        proxy_version=smimesh.__version__,
    )


class Hellos:
    """The Hello of each new stream, with the token its file holds at that moment (the
    kubelet rotates it; a token read once stops being accepted when it expires)."""

    def __init__(self, config: settings.SidecarSettings) -> None:
        self.config = config
        self.token = tokens.TokenFile(config.token_file) if config.token_file else None

    def __call__(self) -> pb.Hello:
        return hello_for(self.config, self.token.read() if self.token is not None else "")


class DiscoveryClient:
    def __init__(
        self,
        target: str,
        sink: loading.ConfigSink,
        *,
        hello: Callable[[], pb.Hello],
        credentials: grpc.ChannelCredentials | Callable[[], grpc.ChannelCredentials] | None = None,
        retry: backoff.Backoff | None = None,
    ) -> None:
        self.target = target
        self.sink = sink
        self.hello = hello
        self.credentials = credentials
        self.retry = retry or backoff.Backoff(initial=0.2, maximum=10.0)
        self.applied: str | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Stream forever; each broken stream is retried after a backoff delay."""
        while True:
            try:
                await self.stream_once()
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "config server %s: %s %s", self.target, exc.code().name, exc.details() or ""
                )
            except tokens.TokenError as exc:
                log.error("config server %s: not connecting: %s", self.target, exc)
            self.connected.clear()
            await self.retry.sleep()

    async def stream_once(self) -> None:
        """One stream: Hello, then apply-and-answer every snapshot until it ends."""
        hello = self.hello()  # the token as its file holds it now
        if self.credentials is None and hello.token:
            # `commands` refuses this set-up at start; never let a token out in plaintext.
            log.error("config server %s: no TLS, so the token is not sent", self.target)
            hello.ClearField("token")
        outgoing: asyncio.Queue[pb.ProxyMessage | None] = asyncio.Queue(maxsize=16)

        async def requests() -> AsyncIterator[pb.ProxyMessage]:
            while (message := await outgoing.get()) is not None:
                yield message

        if self.credentials is None:
            channel = grpc.aio.insecure_channel(self.target)
        elif callable(self.credentials):  # asked on every connection: the roots may change
            channel = grpc.aio.secure_channel(self.target, self.credentials())
        else:
            channel = grpc.aio.secure_channel(self.target, self.credentials)
        async with channel:
            stub = pb_grpc.ConfigDiscoveryStub(channel)
            await outgoing.put(pb.ProxyMessage(hello=hello))
            call = stub.Stream(requests())
            try:
                async for snapshot in call:
                    self.connected.set()
                    self.retry.reset()
                    # Bounded queue: at most one answer per received snapshot is outstanding,
                    # so put() only waits if the server stops reading, which ends the stream.
                    await outgoing.put(self.answer(snapshot))
            finally:
                await outgoing.put(None)
                call.cancel()

    def answer(self, snapshot: pb.ConfigSnapshot) -> pb.ProxyMessage:
        try:
            if snapshot.schema and snapshot.schema != snapshots.SCHEMA:
                raise ValueError(f"unknown schema {snapshot.schema!r}")
            config = snapshots.ProxyConfig.from_json(snapshot.config_json)
            if snapshot.version and config.version != snapshot.version:
                raise ValueError(
                    f"snapshot says version {snapshot.version}, its config says {config.version}"
                )
            self.sink.apply(config)
        except Exception as exc:  # anything that fails keeps the last good config
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            log.error("NACK %s: %s", snapshot.version, reason)
            return pb.ProxyMessage(nack=pb.Nack(version=snapshot.version, reason=reason))
        self.applied = config.version
        return pb.ProxyMessage(ack=pb.Ack(version=config.version))
