"""A test proxy: a real grpcio client of ConfigDiscovery that keeps the resources it is sent,
as the sidecar does, and records the config each response makes (and its raw deltas)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc

from smimesh.proxyconfig import deltas, proxyconfig_pb2, proxyconfig_pb2_grpc, resources, snapshots


class TestProxy:
    __test__ = False

    def __init__(
        self,
        address: str,
        *,
        trust_bundle: bytes,
        namespace: str,
        service_account: str,
        pod: str,
        token: str,
        ack: bool = True,
        nack: str | None = None,
    ) -> None:
        self.channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(trust_bundle))
        self.outbox: queue.Queue[proxyconfig_pb2.ProxyMessage | None] = queue.Queue()
        self.snapshots: queue.Queue[snapshots.ProxyConfig] = queue.Queue()
        self.received: list[snapshots.ProxyConfig] = []
        self.deltas: list[deltas.Delta] = []
        self.held: dict[str, resources.AnyResource] = {}
        self.workload = resources.workload_name(namespace, pod)
        self.error: grpc.RpcError | None = None
        self.ack = ack
        self.nack = nack
        self.outbox.put(
            proxyconfig_pb2.ProxyMessage(
                hello=proxyconfig_pb2.Hello(
                    namespace=namespace, service_account=service_account, pod=pod, token=token
                )
            )
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _requests(self) -> Iterator[proxyconfig_pb2.ProxyMessage]:
        while (message := self.outbox.get()) is not None:
            yield message

    def _run(self) -> None:
        stub = proxyconfig_pb2_grpc.ConfigDiscoveryStub(self.channel)
        try:
            for response in stub.Stream(self._requests()):
                delta = deltas.from_message(response)
                self.deltas.append(delta)
                # what it holds had it applied every response (a refusing proxy holds none,
                # but the test still sees the configs it was offered)
                self.held = deltas.apply(self.held, delta)
                config = resources.assemble(self.held, self.workload)
                if self.nack is not None:
                    refusal = proxyconfig_pb2.Nack(nonce=response.nonce, reason=self.nack)
                    self.outbox.put(proxyconfig_pb2.ProxyMessage(nack=refusal))
                elif self.ack:
                    ack = proxyconfig_pb2.Ack(nonce=response.nonce, version=config.version)
                    self.outbox.put(proxyconfig_pb2.ProxyMessage(ack=ack))
                assert config.version == response.version
                self.received.append(config)
                self.snapshots.put(config)
        except grpc.RpcError as exc:
            self.error = exc

    def next(self, timeout: float = 20.0) -> snapshots.ProxyConfig:
        try:
            return self.snapshots.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no snapshot within {timeout}s (error: {self.error})") from None

    def wait_for_error(self, timeout: float = 20.0) -> grpc.RpcError:
        self.thread.join(timeout)
        assert self.error is not None, "the stream did not fail"
        return self.error

    def close(self) -> None:
        self.outbox.put(None)
        self.channel.close()
        self.thread.join(5)
