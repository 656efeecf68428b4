"""The sidecar's ServiceAccount token: read again for every connection to the config server
(the kubelet rotates projected tokens by swapping the file), never sent over plaintext, and a
sidecar told to send it without TLS refuses to start. Against the operator's real config server
(`serving`, TokenReview on the test control plane's apiserver) on a real TLS socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.compiler import incremental
from smimesh.identity import authority, rotation
from smimesh.operator import (
    authenticating,
    authorities,
    certificates,
    indexing,
    publishing,
    renewing,
    serving,
)
from smimesh.proxyconfig import refs, resources, snapshots
from smimesh.testing import registering, tokens
from tests.sidecar.conftest import config, free_port, service
from tests.sidecar.test_discovery import FakeOperator, _serve

POD = "web-1"


def project(directory: Path, token: str) -> Path:
    """Write the token as the kubelet writes a projected volume: a fresh timestamped
    directory, then one atomic rename of the `..data` symlink; `token` links through it."""
    directory.mkdir(exist_ok=True)
    fresh = directory / f"..{time.time_ns()}"
    fresh.mkdir()
    (fresh / "token").write_text(token)
    staging = directory / "..data_tmp"
    staging.symlink_to(fresh.name)
    staging.rename(directory / "..data")
    link = directory / "token"
    if not link.is_symlink():
        link.symlink_to("..data/token")
    return link


@dataclass
class RecordingAuthenticator(authenticating.TokenReviewAuthenticator):
    """The operator's TokenReview authenticator, noting each token it was shown."""

    presented: list[str] = field(default_factory=list)

    async def authenticate(self, token: str) -> authenticating.Caller:
        self.presented.append(token)
        return await super().authenticate(token)


@dataclass
class ConfigServer:
    """The operator's config server (publisher, TokenReview) on a fixed port, restartable."""

    address: str
    publisher: publishing.Publisher
    authenticator: RecordingAuthenticator
    holder: authorities.CaHolder
    server: grpc.aio.Server | None = None

    async def start(self) -> None:
        serving_cert = renewing.ServingCertificate(
            self.holder, dns_names=(), ip_addresses=("127.0.0.1",)
        )
        self.server, _ = await serving.start_server(
            serving.ConfigDiscovery(self.publisher, self.authenticator),
            certificates.Certificates(self.holder, self.authenticator),
            address=self.address,
            credentials=renewing.grpc_credentials(serving_cert),
        )

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None


@pytest.fixture
async def config_server(api: client.ApiClient) -> AsyncIterator[ConfigServer]:
    holder = authorities.CaHolder(rotation.stable(authority.create("cluster.local")))
    publisher = publishing.Publisher(indexing.MeshIndex())
    started = ConfigServer(
        f"127.0.0.1:{free_port()}", publisher, RecordingAuthenticator(api), holder
    )
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def hold(publisher: publishing.Publisher, config: snapshots.ProxyConfig) -> None:
    """Make the publisher's resources those of `config` alone, as an update would."""
    held = resources.split(config)
    removed = frozenset(publisher.latest) - held.keys()
    delta = resources.ResourceDelta(changed=held, removed=removed)
    publisher.publish(incremental.Update(delta=delta, findings=()))


def register_pod(api: client.ApiClient, namespace: str) -> str:
    """ServiceAccount `web` and its Pod `web-1`, as local workloads register; returns the uid."""
    registering.register(api, registering.Registration(namespace, POD, "web", "10.77.255.1"))
    pod = client.CoreV1Api(api).read_namespaced_pod(POD, namespace)
    return str(pod.metadata.uid)


@pytest.mark.cluster
async def test_a_rotated_token_is_used_once_the_old_one_is_no_longer_accepted(
    api: client.ApiClient,
    namespace: str,
    config_server: ConfigServer,
    sidecars: Any,
    tmp_path: Path,
) -> None:
    proxy = refs.ProxyRef(namespace=namespace, service_account="web", pod=POD)
    first = config(proxy=proxy)
    second = config(proxy=proxy, outbound_services=(service("web", [("127.0.0.1", 9, POD)]),))
    hold(config_server.publisher, first)
    old_uid = register_pod(api, namespace)
    old = tokens.bound_token(api, namespace, "web", POD, expiration_seconds=600)
    token_file = project(tmp_path / "projected", old)
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(config_server.holder.ca.bundle.pem())
    running = await sidecars(
        proxy=proxy,
        config_server=config_server.address,
        token_file=token_file,
        trust_bundle_file=bundle,
    )

    def table() -> str | None:
        current = running.sidecar.ctx.table
        return current.version if current is not None else None

    async def holding(version: str, within: float) -> None:
        await waiting.eventually(
            lambda: table() == version,
            timeout=within,
            message=lambda: f"the sidecar holds table {table()!r}, never {version!r}",
            error=AssertionError,
        )

    await holding(first.version, within=20)

    # The operator goes away. Meanwhile the Pod is deleted and created again under the same
    # name, so the apiserver no longer accepts the old token (bound to the old uid); the
    # kubelet's part: a token for the new Pod, swapped into the projected volume.
    await config_server.stop()
    registering.unregister(api, registering.Registration(namespace, POD, "web", "10.77.255.1"))
    assert register_pod(api, namespace) != old_uid
    new = tokens.bound_token(api, namespace, "web", POD, expiration_seconds=600)
    project(tmp_path / "projected", new)
    review = authenticating.TokenReviewAuthenticator(api)

    async def refused() -> bool:
        try:
            await review.authenticate(old)
        except authenticating.AuthenticationError:
            return True
        return False

    await waiting.eventually(  # the apiserver caches a good review for up to 10 s
        refused,
        timeout=30,
        message="the old token is still accepted",
        interval=0.25,
        error=AssertionError,
    )

    config_server.authenticator.presented.clear()
    hold(config_server.publisher, second)
    await config_server.start()
    # The sidecar's reconnect backoff reaches 10 s while the operator is down.
    await holding(second.version, within=30)
    assert config_server.authenticator.presented
    assert set(config_server.authenticator.presented) == {new}


async def test_the_config_client_never_sends_its_token_over_plaintext(
    sidecars: Any, tmp_path: Path
) -> None:
    port = free_port()
    operator = FakeOperator()
    server = await _serve(operator, port)  # plaintext
    token = tmp_path / "token"
    token.write_text("a-service-account-token")
    proxy = refs.ProxyRef(namespace="shop", service_account="web", pod=POD)
    try:
        await sidecars(proxy=proxy, config_server=f"127.0.0.1:{port}", token_file=token)
        hello = (await operator.next()).hello
        assert (hello.namespace, hello.pod) == ("shop", POD)
        assert hello.token == ""
    finally:
        await server.stop(None)


def test_a_sidecar_with_a_token_but_no_trust_bundle_refuses_to_start(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a-service-account-token")
    with socket.socket() as listener:  # a plaintext "config server": nothing may reach it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        result = subprocess.run(
            [sys.executable, "-m", "smimesh.sidecar", "run",
             "--config-server", f"127.0.0.1:{listener.getsockname()[1]}",
             "--namespace", "shop", "--service-account", "web", "--pod", POD,
             "--token-file", str(token), "--admin-host", "127.0.0.1", "--admin-port", "0",
             "--outbound-port", "0", "--inbound-port", "0"],
            capture_output=True, text=True, timeout=30, env=dict(os.environ),
        )  # fmt: skip
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.returncode == 2, result
    assert "needs --trust-bundle" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
