"""Bytes the config server sends per TrafficSplit weight change, whole snapshots against
deltas, in process (no cluster: the bytes do not depend on it).

    .venv/bin/python bench/publishing_bytes.py [--services 1000] [--proxies 10] [--rounds 20]

The mesh is `operator_propagation`'s (N Services with 3 endpoints each, one split, P meshed
pods). "Snapshots" is what the snapshot stream sent: the whole config JSON of every proxy
whose version changed, from `compile_mesh` (a lower bound: the message's version and schema
fields are not counted). "Deltas" is what the publisher sends now:
the serialized `ConfigDelta`s through in-memory sinks (`delivering.MemorySink`). Prints
both per change, their ratio and the time each took per change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from operator_propagation import NAMESPACE, services, split

from smimesh.compiler import compiling
from smimesh.operator import delivering, indexing, publishing
from smimesh.proxyconfig import deltas, refs


def _pod(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"proxy-{index}",
            "namespace": NAMESPACE,
            "annotations": {"smimesh.dev/injected": "true"},
        },
        "spec": {"serviceAccountName": "bench", "containers": [{"name": "app"}]},
        "status": {
            "podIP": f"10.99.{index // 250}.{index % 250 + 1}",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _index(size: int, proxies: int) -> indexing.MeshIndex:
    index = indexing.MeshIndex()
    for raw in json.loads(services(size))["items"]:
        index.apply(raw)
    index.apply(json.loads(split(0)))
    for n in range(proxies):
        index.apply(_pod(n))
    return index


def snapshots_per_change(size: int, proxies: int, rounds: int) -> tuple[float, float]:
    index = _index(size, proxies)
    before = compiling.compile_mesh(index.snapshot()).configs
    sent, started = 0, time.monotonic()
    for round_ in range(1, rounds + 1):
        index.apply(json.loads(split(round_ % 99 + 1)))
        after = compiling.compile_mesh(index.snapshot()).configs
        sent += sum(
            len(config.to_json())
            for proxy, config in after.items()
            if before.get(proxy) is None or before[proxy].version != config.version
        )
        before = after
    return sent / rounds, (time.monotonic() - started) / rounds


async def deltas_per_change(size: int, proxies: int, rounds: int) -> tuple[float, float]:
    publisher = publishing.Publisher(_index(size, proxies))
    await publisher.compile_now()
    sinks = []
    for n in range(proxies):
        sink = delivering.MemorySink()
        proxy = refs.ProxyRef(namespace=NAMESPACE, service_account="bench", pod=f"proxy-{n}")
        publisher.attach(proxy, sink)
        assert sink.take_nowait() is not None, "no config for the proxy"
        sinks.append(sink)
    sent, started = 0, time.monotonic()
    for round_ in range(1, rounds + 1):
        publisher.index.apply(json.loads(split(round_ % 99 + 1)))
        await publisher.compile_now()
        for sink in sinks:
            delta = sink.take_nowait()
            assert delta is not None, "a proxy got nothing"
            sent += deltas.to_message(delta).ByteSize()
    return sent / rounds, (time.monotonic() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    whole, whole_time = snapshots_per_change(args.services, args.proxies, args.rounds)
    delta, delta_time = asyncio.run(deltas_per_change(args.services, args.proxies, args.rounds))
    print(f"{args.services} Services, {args.proxies} proxies, per weight change:")
    print(f"  snapshots: {whole:>12.0f} bytes  {whole_time * 1000:>7.1f} ms to compile")
    print(f"  deltas:    {delta:>12.0f} bytes  {delta_time * 1000:>7.1f} ms to compile and send")
    print(f"  ratio:     {whole / delta:>12.0f}x fewer bytes")


if __name__ == "__main__":
    main()
