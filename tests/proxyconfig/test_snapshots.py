"""The proxy-config contract: content-addressed versions, lossless JSON, current gRPC code."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from smimesh.proxyconfig import (
    deltas,
    inbound,
    matches,
    outbound,
    proxyconfig_pb2,
    refs,
    resources,
    snapshots,
)

ROOT = Path(__file__).resolve().parents[2]


def _config(weight: int = 50) -> snapshots.ProxyConfig:
    root = refs.ServiceRef(namespace="shop", name="checkout")
    return snapshots.ProxyConfig.build(
        proxy=refs.ProxyRef(namespace="shop", service_account="web", pod="web-1"),
        identity="spiffe://cluster.local/ns/shop/sa/web",
        settings=snapshots.MeshSettings(),
        outbound=(
            outbound.OutboundService(
                service=root,
                hostnames=("checkout", "checkout.shop", "checkout.shop.svc.cluster.local"),
                ports=(outbound.ServicePort(port=80, target_port=8080, protocol="http"),),
                routes=(
                    outbound.SplitRoute(
                        split="shop/checkout-canary",
                        matches=(matches.HttpMatch(path_regex="/api", methods=("GET",)),),
                        backends=(
                            outbound.WeightedBackend(
                                service=refs.ServiceRef(namespace="shop", name="checkout-v1"),
                                weight=100 - weight,
                            ),
                            outbound.WeightedBackend(
                                service=refs.ServiceRef(namespace="shop", name="checkout-v2"),
                                weight=weight,
                            ),
                        ),
                    ),
                ),
            ),
        ),
        inbound=(
            inbound.InboundPort(
                port=8080,
                app_port=18080,
                protocol="http",
                rules=(
                    inbound.InboundRule(
                        target="shop/allow-web",
                        sources=("spiffe://cluster.local/ns/shop/sa/web",),
                    ),
                ),
            ),
        ),
    )


@pytest.mark.fast
def test_equal_content_has_equal_versions_and_any_change_changes_it() -> None:
    assert _config().version == _config().version
    assert _config(50).version != _config(60).version
    assert len(_config().version) == 16


@pytest.mark.fast
def test_json_round_trip_is_lossless_and_keeps_the_version() -> None:
    config = _config()
    again = snapshots.ProxyConfig.from_json(config.to_json())
    assert again == config
    assert snapshots.content_version(again) == config.version


@pytest.mark.fast
def test_a_delta_message_carries_the_resources_of_the_config() -> None:
    config = _config()
    held = resources.split(config)
    delta = deltas.Delta(nonce="1", version=config.version, changed=held, full=True)
    wire = deltas.to_message(delta).SerializeToString()
    received = deltas.from_message(proxyconfig_pb2.ConfigDelta.FromString(wire))
    workload = resources.workload_name(config.proxy.namespace, config.proxy.pod)
    assert resources.assemble(deltas.apply({}, received), workload) == config
    assert received.version == config.version


@pytest.mark.fast
def test_models_are_frozen_and_refuse_unknown_fields() -> None:
    config = _config()
    with pytest.raises(ValidationError):
        config.version = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra_forbidden"):
        refs.ServiceRef.model_validate({"namespace": "a", "name": "b", "port": 1})
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        outbound.ServicePort(port=70000, target_port=1, protocol="tcp")


def test_generated_grpc_modules_are_current(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "out"
    out.mkdir()
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            "smimesh/proxyconfig/proxyconfig.proto",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    names = ["proxyconfig_pb2.py", "proxyconfig_pb2.pyi", "proxyconfig_pb2_grpc.py"]
    names.append("proxyconfig_pb2_grpc.pyi")
    fresh, checked_in = out / "smimesh/proxyconfig", ROOT / "smimesh/proxyconfig"
    _, mismatch, errors = filecmp.cmpfiles(fresh, checked_in, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run `make proto` and commit the result"


@pytest.mark.fast
def test_a_shared_outbound_encoding_gives_the_same_bytes_and_version_as_encoding_it_alone() -> None:
    alone = _config()
    shared = snapshots.ProxyConfig.build(
        proxy=alone.proxy,
        identity=alone.identity,
        settings=alone.settings,
        outbound=alone.outbound,
        inbound=alone.inbound,
        outbound_json=snapshots.encode_outbound(alone.outbound),
    )
    assert shared.version == alone.version
    assert shared.to_json() == alone.to_json()
    again = snapshots.ProxyConfig.from_json(shared.to_json())
    assert again.to_json() == shared.to_json()  # what the sidecar's admin /config shows
    assert again == shared
    assert hash(again) == hash(shared)
