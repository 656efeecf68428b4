"""Operator benchmark: time from an SMI change to every proxy holding the new config, at
growing numbers of Services, against the apiserver's own watch latency in the same run.

    .venv/bin/python bench/operator_propagation.py [--sizes 100,1000,5000] [--proxies 10]
        [--rounds 50]

For each size: a local control plane, the operator (as a process, under its own
ServiceAccount), N Services with 3 endpoints each, P proxies (real gRPC clients holding real
tokens), one TrafficSplit. Each round updates the split's weights and records (a) when a
plain watch on TrafficSplits sees the change (the baseline: the apiserver's latency) and (b)
when the last proxy received a delta with the new weights. Prints p50/p99 of both, the
ratio of the p50s, the operator's CPU per update, the bytes all proxies received per update
(serialized responses) and its resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client, watch

from smimesh.proxyconfig import proxyconfig_pb2, proxyconfig_pb2_grpc
from smimesh.testing import clusters, controlplane, meshes, registering

NAMESPACE = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Proxy(threading.Thread):
    """Streams deltas and reports (time, split weight of `b`) for each one that carries the
    root Service; counts the bytes of every response."""

    def __init__(self, address: str, bundle: bytes, pod: str, token: str) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(bundle))
        self.hello = proxyconfig_pb2.Hello(
            namespace=NAMESPACE, service_account="bench", pod=pod, token=token
        )
        self.outbox: queue.Queue[proxyconfig_pb2.ProxyMessage | None] = queue.Queue()
        self.seen: queue.Queue[tuple[float, int]] = queue.Queue()
        self.error: str | None = None
        self.received_bytes = 0

    def run(self) -> None:
        try:
            self.stream()
        except grpc.RpcError as exc:
            self.error = f"{exc.code().name}: {exc.details()}"

    def stream(self) -> None:
        self.outbox.put(proxyconfig_pb2.ProxyMessage(hello=self.hello))

        def requests() -> Any:
            while (message := self.outbox.get()) is not None:
                yield message

        stub = proxyconfig_pb2_grpc.ConfigDiscoveryStub(self.channel)
        for response in stub.Stream(requests()):
            self.received_bytes += response.ByteSize()
            # json, not the pydantic models: ten proxies share this process's GIL, and a real
            # sidecar parses in its own process; the operator's delivery is what is measured.
            ack = proxyconfig_pb2.Ack(nonce=response.nonce, version=response.version)
            self.outbox.put(proxyconfig_pb2.ProxyMessage(ack=ack))
            for resource in response.resources:
                if resource.name != f"outbound/{NAMESPACE}/root":
                    continue
                service = json.loads(resource.body_json)
                if service["routes"]:
                    backends = service["routes"][0]["backends"]
                    weights = {b["service"]["name"]: b["weight"] for b in backends}
                    self.seen.put((time.monotonic(), weights.get("b", -1)))

    def wait_for(self, weight: int, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, seen = self.seen.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no config with weight {weight} ({self.error})") from None
            if seen == weight:
                return at

    def close(self) -> None:
        self.outbox.put(None)
        self.channel.close()


def kubectl(cluster: clusters.Cluster, *args: str, input: str | None = None) -> None:
    result = cluster.kubectl(*args, input=input)
    if result.returncode != 0:
        sys.exit(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()}")


def services(count: int) -> str:
    """N Services and, for each, an EndpointSlice with 3 ready endpoints."""
    items: list[dict[str, Any]] = []
    for index, name in enumerate(["root", "a", "b", *(f"svc-{i}" for i in range(count - 3))]):
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }
        )
        items.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-1",
                    "namespace": NAMESPACE,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [
                    {"addresses": [f"10.{200 + e}.{index // 250}.{index % 250 + 1}"]}
                    for e in range(3)
                ],
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def split(weight_b: int) -> str:
    return json.dumps(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "root", "namespace": NAMESPACE},
            "spec": {
                "service": "root",
                "backends": [
                    {"service": "a", "weight": 100 - weight_b},
                    {"service": "b", "weight": weight_b},
                ],
            },
        }
    )


def watch_latency(
    api: client.ApiClient, weight: int, started: threading.Event
) -> queue.Queue[float]:
    """A plain watch on TrafficSplits; puts the time it sees `weight` for b."""
    out: queue.Queue[float] = queue.Queue()

    def run() -> None:
        stream = watch.Watch()
        objects = client.CustomObjectsApi(api)
        started.set()
        for event in stream.stream(
            objects.list_namespaced_custom_object,
            "split.smi-spec.io",
            "v1alpha4",
            NAMESPACE,
            "trafficsplits",
            timeout_seconds=120,
        ):
            backends = event["object"]["spec"]["backends"]
            if {b["service"]: b["weight"] for b in backends}.get("b") == weight:
                out.put(time.monotonic())
                stream.stop()

    threading.Thread(target=run, daemon=True).start()
    return out


def measure(size: int, proxies: int, rounds: int, work: Path) -> dict[str, float]:
    with controlplane.running() as plane:
        cluster = clusters.Cluster("local", plane.kubeconfig, str(plane.binaries.kubectl))
        meshes.install(cluster)
        kubectl(cluster, "create", "namespace", NAMESPACE)
        operator = meshes.start_operator(
            cluster.kubeconfig_for("smimesh-system", "smimesh-operator", work / "op.kubeconfig"),
            work,
        )
        fleet: list[Proxy] = []
        try:
            bundle = meshes.trust_bundle(cluster)
            time.sleep(2)
            idle_rss = rss_kib(operator.process.pid)
            kubectl(cluster, "apply", "--server-side", "-f", "-", input=services(size))
            kubectl(cluster, "apply", "-f", "-", input=split(0))
            api = cluster.api_client()
            for index in range(proxies):
                pod = f"proxy-{index}"
                ip = f"10.99.{index // 250}.{index % 250 + 1}"
                registering.register(
                    api, registering.Registration(NAMESPACE, pod, "bench", ip, {"app": "bench"})
                )
                proxy = Proxy(
                    operator.grpc_address,
                    bundle,
                    pod,
                    cluster.token(NAMESPACE, "bench", audience="smimesh", pod=pod),
                )
                proxy.start()
                fleet.append(proxy)
            for proxy in fleet:
                proxy.wait_for(0)
            loaded_rss = rss_kib(operator.process.pid)
            propagation, baseline, sent = [], [], []
            cpu_before = cpu_seconds(operator.process.pid)
            for round_ in range(1, rounds + 1):
                weight = round_ % 99 + 1
                ready = threading.Event()
                seen_by_watch = watch_latency(api, weight, ready)
                ready.wait()
                time.sleep(0.2)
                received = sum(proxy.received_bytes for proxy in fleet)
                start = time.monotonic()
                kubectl(cluster, "apply", "-f", "-", input=split(weight))
                last = max(proxy.wait_for(weight) for proxy in fleet)
                propagation.append(last - start)
                sent.append(sum(proxy.received_bytes for proxy in fleet) - received)
                baseline.append(seen_by_watch.get(timeout=60) - start)
            cpu = (cpu_seconds(operator.process.pid) - cpu_before) / rounds
            return {
                "services": size,
                "watch_p50": percentile(baseline, 0.5) * 1000,
                "watch_p99": percentile(baseline, 0.99) * 1000,
                "p50": percentile(propagation, 0.5) * 1000,
                "p99": percentile(propagation, 0.99) * 1000,
                "cpu_ms": cpu * 1000,
                "bytes_per_update": percentile(sent, 0.5),
                "rss_mib": loaded_rss / 1024,
                "rss_per_1000_services_mib": (loaded_rss - idle_rss) / 1024 / size * 1000,
            }
        except RuntimeError as exc:
            sys.exit(f"{exc}; operator log:\n{operator.logs()[-3000:]}")
        finally:
            for proxy in fleet:
                proxy.close()
            operator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--proxies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    rows = []
    for size in (int(part) for part in args.sizes.split(",")):
        print(f"measuring {size} services with {args.proxies} proxies ...", file=sys.stderr)
        work = Path(tempfile.mkdtemp(prefix="smimesh-bench-"))
        rows.append(measure(size, args.proxies, args.rounds, work))
    print(
        f"{'services':>8} {'watch p50/p99 ms':>17} {'all proxies p50/p99 ms':>23} "
        f"{'p50 ratio':>9} {'CPU/update':>10} {'bytes/update':>12} {'RSS MiB':>8} "
        f"{'MiB/1k svc':>10}"
    )
    for row in rows:
        print(
            f"{row['services']:>8.0f} {row['watch_p50']:>8.0f}/{row['watch_p99']:<8.0f} "
            f"{row['p50']:>11.0f}/{row['p99']:<11.0f} {row['p50'] / row['watch_p50']:>8.1f}x "
            f"{row['cpu_ms']:>8.0f}ms {row['bytes_per_update']:>12.0f} {row['rss_mib']:>8.0f} "
            f"{row['rss_per_1000_services_mib']:>10.1f}"
        )


if __name__ == "__main__":
    main()
