"""Operator benchmark: time from an SMI change to the last proxy holding it, at growing numbers
of Services and proxies, against the apiserver's own watch latency in the same run.

    .venv/bin/python bench/operator_propagation.py [--sizes 1000,5000,10000]
        [--proxies 100,1000] [--rounds 20] [--json] [--quick]

For each size: a local control plane (etcd + kube-apiserver), N Services with an
EndpointSlice of 3 endpoints each (created through the API by a few concurrent clients; the
setup time is reported), one TrafficSplit. For each proxy count P: P registered Pods in their
own namespace, each with a TokenRequest token bound to it, and P real gRPC config streams
(the sidecar's own `DiscoveryClient`, all on one event loop: `proxy_fleet`) to the operator,
which runs as a process under its own ServiceAccount. Each round patches the split's weights
and records, from the patch's response, (a) when a plain watch on TrafficSplits, in a
process of its own (`split_watch`), sees it (the baseline: the apiserver's latency) and (b)
when the last proxy holds it. Then a reconnect
storm: the operator is killed and started again, and every proxy reconnects with the
sidecar's backoff; timed until all of them hold a config again.

Per size and proxy count: p50/p99 of both, their ratios, the operator's CPU per update and
its resident memory (from /proc), the bytes the proxies received per update (serialized
size of the messages, summed), and the storm's time. A table on stdout, or with `--json`
one JSON object per row (units in the keys) and nothing else; progress goes to stderr.
`--quick` is a smoke test (100 Services, 10 proxies, 3 rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client

from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.proxyconfig import refs
from smimesh.testing import clusters, controlplane, meshes, reaping, registering, tokens

sys.path.insert(0, str(Path(__file__).parent))
import proxy_fleet  # a sibling bench module, not part of the package

NAMESPACE = "bench"
PROXY_NAMESPACE = "bench-proxies"
SERVICE_ACCOUNT = "bench"
ROOT = refs.ServiceRef(namespace=NAMESPACE, name="root")
SPLIT = ("split.smi-spec.io", "v1alpha4", NAMESPACE, "trafficsplits")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WATCHER = Path(__file__).with_name("split_watch.py")
CLIENTS = 8
"""Concurrent API clients for the setup (Services, slices, Pods, tokens)."""
WAIT = 600.0
"""The longest any one step may take (a proxy fleet at 10,000 Services is slow)."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mib(pid: int, key: str = "VmRSS") -> float:
    """VmRSS (resident now) or VmHWM (its peak) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def service_objects(count: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """N Services (root, its backends a and b, then fillers) and, for each, an
    EndpointSlice with 3 endpoints."""
    for index, name in enumerate(["root", "a", "b", *(f"svc-{i}" for i in range(count - 3))]):
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
        endpoints = {
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
                {"addresses": [f"10.{200 + e}.{index // 250}.{index % 250 + 1}"]} for e in range(3)
            ],
        }
        yield service, endpoints


def split(weight_b: int) -> dict[str, Any]:
    return {
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


def parallel(work: Callable[[Any], Any], items: list[Any], what: str) -> list[Any]:
    """`work` on every item with `CLIENTS` threads, saying how far it got every tenth."""
    done, step, lock = [0], max(1, len(items) // 10), threading.Lock()

    def counted(item: Any) -> Any:
        result = work(item)
        with lock:
            done[0] += 1
            if done[0] % step == 0 and done[0] < len(items):
                say(f"  {what}: {done[0]:,} of {len(items):,}")
        return result

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(counted, items))


def create_services(api: client.ApiClient, count: int) -> None:
    # Unparsed answers (`_preload_content=False`): deserializing 20,000 responses would cost
    # more than the writes; so the calls are typed loosely.
    services: Any = client.CoreV1Api(api).create_namespaced_service
    slices: Any = client.DiscoveryV1Api(api).create_namespaced_endpoint_slice

    def create(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
        service, endpoints = pair
        services(NAMESPACE, service, _preload_content=False).release_conn()
        slices(NAMESPACE, endpoints, _preload_content=False).release_conn()

    parallel(create, list(service_objects(count)), "Services and EndpointSlices")


def register_proxies(api: client.ApiClient, first: int, last: int) -> list[tuple[str, str]]:
    """Pods proxy-FIRST .. proxy-(LAST-1), registered as meshed and Running, with a token
    bound to each; returns (pod, token) pairs."""

    def register(index: int) -> tuple[str, str]:
        pod = f"proxy-{index}"
        ip = f"10.99.{index // 250}.{index % 250 + 1}"
        registering.register(
            api, registering.Registration(PROXY_NAMESPACE, pod, SERVICE_ACCOUNT, ip)
        )
        return pod, tokens.bound_token(api, PROXY_NAMESPACE, SERVICE_ACCOUNT, pod)

    if last <= first:
        return []
    # The first alone: it creates the ServiceAccount the others would race to create.
    return [register(first), *parallel(register, list(range(first + 1, last)), "proxies")]


@dataclass(frozen=True)
class Seen:
    """The split as the baseline watch saw it last: b's weight, when, its generation and the
    generation its Programmed condition is True for."""

    weight: int | None = None
    at: float = 0.0
    generation: int = 0
    programmed: int = -1


class SplitWatch:
    """The baseline: a plain watch on TrafficSplits in a process of its own (`split_watch`,
    so it shares no interpreter lock with the proxies), and the last weight of `b` it saw,
    stamped with the machine's monotonic clock in that process."""

    def __init__(self, kubeconfig: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.seen: waiting.Versioned[Seen] = waiting.Versioned(Seen())
        self.process = subprocess.Popen(
            [sys.executable, str(WATCHER), str(kubeconfig), NAMESPACE, "b"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its group, which the reaper ends if we die first
        )
        reaping.hold_group(self.process.pid)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends when the watcher does
            at, weight, generation, programmed = line.split()
            seen = Seen(int(weight), float(at), int(generation), int(programmed))
            with contextlib.suppress(RuntimeError):  # the loop closed first (Ctrl-C)
                self.loop.call_soon_threadsafe(self.seen.set, seen)

    async def sees(self, weight: int) -> float:
        """When the watch saw b's weight become `weight`."""
        return (await self._until(lambda seen: seen.weight == weight, f"weight {weight}")).at

    async def settled(self) -> None:
        """Until the operator reported the split Programmed (every proxy ACKed it) for its
        current generation: its work on the last change is over, the next round starts clean."""
        await self._until(lambda seen: seen.programmed == seen.generation, "it Programmed")

    async def _until(self, predicate: Callable[[Seen], bool], what: str) -> Seen:
        try:
            async with asyncio.timeout(60):
                return await self.seen.wait(predicate)
        except TimeoutError:
            raise proxy_fleet.FleetError(
                f"the baseline watch did not see {what} within 60s (it saw "
                f"{self.seen.value}; watcher exit code {self.process.poll()})"
            ) from None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        reaping.release_group(self.process.pid)


@dataclass
class Row:
    services: int
    proxies: int
    rounds: int
    setup_services_s: float
    setup_proxies_s: float = 0.0
    write_p50_ms: float = 0.0
    watch_p50_ms: float = 0.0
    watch_p99_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p50_ratio: float = 0.0
    p99_ratio: float = 0.0
    cpu_per_update_ms: float = 0.0
    bytes_per_update: float = 0.0
    rss_mib: float = 0.0
    rss_peak_mib: float = 0.0
    reconnect_s: float = 0.0
    restart_serving_s: float = 0.0
    proxies_held: int = 0


@dataclass
class Size:
    """One size's cluster: its Services, the split, the proxies registered so far."""

    cluster: clusters.Cluster
    api: client.ApiClient
    services: int
    work: Path
    setup_services_s: float = 0.0
    registered: list[tuple[str, str]] = field(default_factory=list)
    weight: int = 0
    split_created: bool = False

    def next_weight(self) -> int:
        self.weight = self.weight % 99 + 1
        return self.weight

    def start_operator(
        self, grpc_address: str | None = None, webhook_address: str | None = None
    ) -> meshes.OperatorProcess:
        kubeconfig = self.work / "operator.kubeconfig"
        if not kubeconfig.exists():
            self.cluster.kubeconfig_for(names.MESH_NAMESPACE, names.OPERATOR_SERVICE, kubeconfig)
        return meshes.start_operator(
            kubeconfig,
            self.work,
            timeout=WAIT,
            grpc_address=grpc_address,
            webhook_address=webhook_address,
        )

    def patch(self, weight: int) -> float:
        """Set b's weight; returns when the apiserver answered."""
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
            *SPLIT, "root", {"spec": split(weight)["spec"]}
        )
        return time.monotonic()


def fleet_for(size: Size, address: str, bundle: bytes, count: int) -> proxy_fleet.Fleet:
    credentials = grpc.ssl_channel_credentials(bundle)
    return proxy_fleet.Fleet(
        proxy_fleet.BenchProxy(
            address,
            pb.Hello(
                namespace=PROXY_NAMESPACE,
                service_account=SERVICE_ACCOUNT,
                pod=pod,
                token=token,
                proxy_version="bench",
            ),
            credentials,
            ROOT,
            "b",
        )
        for pod, token in size.registered[:count]
    )


async def measure(size: Size, proxies: int, rounds: int) -> Row:
    """One row: a fresh operator, the fleet connected, the rounds, the storm."""
    row = Row(size.services, proxies, rounds, size.setup_services_s)
    started = time.monotonic()
    if len(size.registered) < proxies:
        say(f"registering {proxies - len(size.registered):,} proxies (Pods, bound tokens) ...")
        size.registered += await asyncio.to_thread(
            register_proxies, size.api, len(size.registered), proxies
        )
    say("starting the operator ...")
    operators = [await asyncio.to_thread(size.start_operator)]
    try:
        if not size.split_created:
            await asyncio.to_thread(meshes.wait_served, size.cluster, operators[0], timeout=WAIT)
            objects = client.CustomObjectsApi(size.api)
            await asyncio.to_thread(objects.create_namespaced_custom_object, *SPLIT, split(0))
            size.split_created = True
        bundle = await asyncio.to_thread(meshes.trust_bundle, size.cluster)
        async with fleet_for(size, operators[0].grpc_address, bundle, proxies) as fleet:
            say(f"{proxies:,} proxies connecting; waiting until all hold their config ...")
            await fleet.all_hold(size.weight, within=WAIT)
            row.setup_proxies_s = time.monotonic() - started
            await run_rounds(size, fleet, operators[0], row)
            operators.append(await storm(size, fleet, operators[0], row))
            row.proxies_held = sum(p.holding.value.weight == size.weight for p in fleet.proxies)
    except proxy_fleet.FleetError as exc:
        raise proxy_fleet.FleetError(
            f"{exc}; the operator's log ends:\n{operators[-1].logs()[-3000:]}"
        ) from None
    finally:
        for operator in operators:
            operator.stop()
    return row


async def run_rounds(
    size: Size, fleet: proxy_fleet.Fleet, operator: meshes.OperatorProcess, row: Row
) -> None:
    """Each round: patch the split, time the watch and the last proxy from the response."""
    baseline = SplitWatch(size.cluster.kubeconfig, asyncio.get_running_loop())
    try:
        await baseline.sees(size.weight)  # established: it listed the split as it is
        row.rss_mib = memory_mib(operator.process.pid)
        writes, watched, propagated, received = [], [], [], []
        cpu_before = cpu_seconds(operator.process.pid)
        for number in range(1, row.rounds + 1):
            await baseline.settled()
            weight = size.next_weight()
            bytes_before = fleet.received_bytes()
            sent = time.monotonic()
            answered = await asyncio.to_thread(size.patch, weight)
            last = await fleet.all_hold(weight, within=WAIT)
            seen = await baseline.sees(weight)
            writes.append(answered - sent)
            watched.append(seen - answered)
            propagated.append(last - answered)
            received.append(fleet.received_bytes() - bytes_before)
            say(
                f"  round {number}/{row.rounds}: watch {watched[-1] * 1000:.0f} ms, "
                f"last proxy {propagated[-1] * 1000:.0f} ms"
            )
        cpu = cpu_seconds(operator.process.pid) - cpu_before
    finally:
        baseline.stop()
    row.write_p50_ms = percentile(writes, 0.5) * 1000
    row.watch_p50_ms = percentile(watched, 0.5) * 1000
    row.watch_p99_ms = percentile(watched, 0.99) * 1000
    row.p50_ms = percentile(propagated, 0.5) * 1000
    row.p99_ms = percentile(propagated, 0.99) * 1000
    row.p50_ratio = row.p50_ms / max(row.watch_p50_ms, 0.001)
    row.p99_ratio = row.p99_ms / max(row.watch_p99_ms, 0.001)
    row.cpu_per_update_ms = cpu / row.rounds * 1000
    row.bytes_per_update = sum(received) / row.rounds
    row.rss_peak_mib = memory_mib(operator.process.pid, "VmHWM")


async def storm(
    size: Size, fleet: proxy_fleet.Fleet, operator: meshes.OperatorProcess, row: Row
) -> meshes.OperatorProcess:
    """Kill the operator, start it again on its addresses at once; every proxy reconnects
    with its own backoff. Returns the new operator."""
    say(f"reconnect storm: killing the operator, {row.proxies:,} proxies reconnect ...")
    killed = time.monotonic()
    operator.stop(kill=True)
    again = await asyncio.to_thread(
        size.start_operator,
        grpc_address=operator.grpc_address,
        webhook_address=operator.webhook_address,
    )
    row.restart_serving_s = time.monotonic() - killed
    row.reconnect_s = await fleet.all_heard_after(killed, within=WAIT) - killed
    return again


async def measure_size(services: int, counts: list[int], rounds: int, rows: list[Row]) -> None:
    """Every row of one size, appended to `rows` as each is measured."""
    work = Path(tempfile.mkdtemp(prefix="smimesh-bench-"))
    reaping.hold_directory(work)
    try:
        with controlplane.running(say=say) as plane:
            cluster = clusters.Cluster("local", plane.kubeconfig, str(plane.binaries.kubectl))
            await asyncio.to_thread(meshes.install, cluster)
            with cluster.api_client() as api:
                core = client.CoreV1Api(api)
                for namespace in (NAMESPACE, PROXY_NAMESPACE):
                    core.create_namespace(
                        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
                    )
                say(
                    f"creating {services:,} Services with an EndpointSlice each ({CLIENTS} "
                    "concurrent clients; thousands take a minute or more) ..."
                )
                started = time.monotonic()
                await asyncio.to_thread(create_services, api, services)
                size = Size(cluster, api, services, work, time.monotonic() - started)
                say(f"  created in {size.setup_services_s:.1f}s")
                for count in sorted(counts):
                    say(f"measuring {services:,} Services with {count:,} proxies ...")
                    rows.append(await measure(size, count, rounds))
                    say(f"row: {json.dumps(as_json(rows[-1]))}")
    finally:
        reaping.remove_directory(work)


COLUMNS = (
    ("services", "{:>8,.0f}"),
    ("proxies", "{:>7,.0f}"),
    ("watch p50/p99 ms", "{watch_p50_ms:>8.0f}/{watch_p99_ms:<8.0f}"),
    ("last proxy p50/p99 ms", "{p50_ms:>10.0f}/{p99_ms:<10.0f}"),
    ("ratio p50/p99", "{p50_ratio:.1f}x/{p99_ratio:.1f}x"),
    ("CPU/update", "{cpu_per_update_ms:>7.0f} ms"),
    ("bytes/update", "{bytes_per_update:>12,.0f}"),
    ("RSS/peak MiB", "{rss_mib:>6.0f}/{rss_peak_mib:<6.0f}"),
    ("storm s", "{reconnect_s:>7.1f}"),
    ("setup s", "{setup_services_s:>5.0f}+{setup_proxies_s:<5.0f}"),
)


def table(rows: list[Row]) -> str:
    cells = [
        [form.format(vars(row)[name]) if form.startswith("{:") else form.format(**vars(row))
         for name, form in COLUMNS]
        for row in rows
    ]  # fmt: skip
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, (name, _) in
              enumerate(COLUMNS)]  # fmt: skip
    lines = [[name for name, _ in COLUMNS], *cells]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def sizes(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not values or min(values) < 3:
        raise argparse.ArgumentTypeError("each number must be at least 3")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="At 10,000 Services x 1,000 proxies one row takes tens of minutes: every "
        "proxy receives every Service on every change. Start with --quick.",
    )
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=[1000, 5000, 10000],
        help="numbers of Services, one control plane each (default: 1000,5000,10000)",
    )
    parser.add_argument(
        "--proxies",
        type=sizes,
        default=[100, 1000],
        help="proxy counts to measure at each size (default: 100,1000)",
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="weight changes per row (default: 20)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per row, nothing else"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 100 Services, 10 proxies, 3 rounds"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.proxies, args.rounds = [100], [10], 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rows: list[Row] = []
    failure = None
    try:
        for services in args.sizes:
            asyncio.run(measure_size(services, args.proxies, args.rounds, rows))
    except KeyboardInterrupt:
        failure = "interrupted; everything it started is stopped"
    except (
        proxy_fleet.FleetError,
        meshes.MeshError,
        controlplane.ControlPlaneError,
        tokens.TokenRequestError,
        waiting.WaitTimeoutError,
        TimeoutError,
        client.ApiException,
    ) as exc:
        failure = f"operator benchmark failed: {exc}"
    if args.json:
        for row in rows:
            print(json.dumps(as_json(row)))
    elif rows:
        print(table(rows))
    if failure is not None:
        sys.exit(failure + (" (the rows above were measured before)" if rows else ""))


def as_json(row: Row) -> dict[str, float]:
    return {key: round(value, 3) for key, value in vars(row).items()}


if __name__ == "__main__":
    main()
