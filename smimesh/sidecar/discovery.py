"""The config client: `ConfigDiscovery.Stream` to the operator's config server. Sends a Hello
with the proxy's identity, keeps the resources the server sent, and applies each response
atomically: the new map of resources (`deltas.apply`), the config assembled from it
(`resources.assemble`, checked against the version the server announced), parsed and
assembled off the event loop, then applied to the sink. It ACKs the response's nonce, or
NACKs it with the reason and keeps the previous map and config; it reconnects with backoff,
the last good config staying in force throughout, so traffic continues while the operator is
down.

Started by `running` when `--config-server` is set; feeds the same `loading.ConfigSink` as the
config file. Speaks only `smimesh.proxyconfig`'s generated gRPC code. Every stream starts with a
fresh Hello whose token is read from its file (`tokens`) at that moment, and a token is never
sent over a plaintext channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import grpc

import smimesh
from smimesh._aio import backoff
from smimesh.proxyconfig import deltas, resources, snapshots
from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.proxyconfig import proxyconfig_pb2_grpc as pb_grpc
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
        self.held: Mapping[str, resources.AnyResource] = {}
        """The resources of the config applied last."""
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
        """One stream: Hello, then apply-and-answer every response until it ends."""
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
                workload = resources.workload_name(hello.namespace, hello.pod)
                async for response in call:
                    self.connected.set()
                    self.retry.reset()
                    # Bounded queue: at most one answer per received response is outstanding,
                    # so put() only waits if the server stops reading, which ends the stream.
                    await outgoing.put(await self.answer(response, workload))
            finally:
                await outgoing.put(None)
                call.cancel()

    async def answer(self, response: pb.ConfigDelta, workload: str) -> pb.ProxyMessage:
        """Apply one response to what is held (all of it or nothing); the ACK or NACK."""
        try:
            held, config = await asyncio.to_thread(_assemble, self.held, response, workload)
            self.sink.apply(config)
        except Exception as exc:  # anything that fails keeps the last good map and config
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            log.error("NACK %s: %s", response.nonce, reason)
            return pb.ProxyMessage(nack=pb.Nack(nonce=response.nonce, reason=reason))
        self.held, self.applied = held, config.version
        return pb.ProxyMessage(ack=pb.Ack(nonce=response.nonce, version=config.version))


def _assemble(
    held: Mapping[str, resources.AnyResource], response: pb.ConfigDelta, workload: str
) -> tuple[dict[str, resources.AnyResource], snapshots.ProxyConfig]:
    """The resources after `response` and the config of `workload` they make; raises if any
    body cannot be read, a resource is missing, or the config is not the announced version.
    Pure (reads `held`, returns a new map): runs in a worker thread."""
    delta = deltas.from_message(response)
    after = deltas.apply(held, delta)
    if workload not in after:
        raise ValueError(f"the response leaves no {workload} resource")
    config = resources.assemble(after, workload)
    if delta.version and config.version != delta.version:
        raise ValueError(
            f"the response says version {delta.version}, the resources make {config.version}"
        )
    return after, config
