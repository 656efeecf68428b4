"""The bench proxies' reading of a config message (`proxy_fleet.Wire`): the watched Service's
entry comes out of a delta of a compiled config as the sidecar's model, whatever its neighbours."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smimesh.compiler import compiling, parsing
from smimesh.proxyconfig import deltas, refs, resources, snapshots
from smimesh.proxyconfig import proxyconfig_pb2 as pb

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import operator_propagation
import proxy_fleet

pytestmark = pytest.mark.fast


def compiled(weight_b: int, services: int = 20) -> snapshots.ProxyConfig:
    items = [item for pair in operator_propagation.service_objects(services) for item in pair]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "proxy-0",
            "namespace": "bench-proxies",
            "uid": "u-0",
            "annotations": {"smimesh.dev/injected": "local"},
        },
        "spec": {"serviceAccountName": "bench", "containers": [{"name": "app", "image": "x"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.99.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    mesh = parsing.mesh_state([*items, operator_propagation.split(weight_b), pod])
    (config,) = compiling.compile_mesh(mesh).configs.values()
    return config


def snapshot(config: snapshots.ProxyConfig) -> pb.ConfigDelta:
    """The whole-scope delta a connecting proxy gets for `config`."""
    whole = deltas.Delta(
        nonce="1", version=config.version, changed=resources.split(config), full=True
    )
    return deltas.to_message(whole)


def test_a_delta_without_the_service_carries_no_entry() -> None:
    message = deltas.to_message(deltas.Delta(nonce="2", version="v", changed={}))
    assert proxy_fleet.Wire.outbound_entry(message, operator_propagation.ROOT) is None


def test_the_root_entry_carries_the_split_weights() -> None:
    message = snapshot(compiled(37))
    entry = proxy_fleet.Wire.outbound_entry(message, operator_propagation.ROOT)
    assert entry is not None
    assert entry.service == operator_propagation.ROOT
    assert proxy_fleet.weight_of(entry, "b") == 37
    assert proxy_fleet.weight_of(entry, "a") == 63


def test_a_service_without_a_split_has_no_weight_and_an_absent_one_no_entry() -> None:
    message = snapshot(compiled(5))
    plain = proxy_fleet.Wire.outbound_entry(message, refs.ServiceRef(namespace="bench", name="a"))
    assert plain is not None
    assert proxy_fleet.weight_of(plain, "b") is None
    missing = refs.ServiceRef(namespace="bench", name="nowhere")
    assert proxy_fleet.Wire.outbound_entry(message, missing) is None


def test_the_answer_acks_the_version_and_the_size_is_the_serialized_one() -> None:
    message = snapshot(compiled(1))
    ack = proxy_fleet.Wire.ack(message).ack
    assert (ack.nonce, ack.version) == (message.nonce, message.version)
    assert proxy_fleet.Wire.size(message) == len(message.SerializeToString())
