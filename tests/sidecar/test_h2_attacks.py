"""HTTP/2 attacks on a real `smimesh sidecar run` process in front of a real h2 app, all on
real loopback sockets: the rapid-reset flood (CVE-2023-44487) from a plaintext outbound client
and from an mTLS identity the inbound port denies, and idle connections held open to exhaust
descriptors. Each test states the bound it asserts and measures a legitimate client beside
the attacker."""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
import pytest

from smimesh._aio import waiting
from smimesh.proxyconfig import inbound
from tests.sidecar.conftest import NS, Pki, config, free_port, service, spiffe, until_ready

SMIMESH = str(Path(sys.executable).with_name("smimesh"))
ROOT = Path(__file__).resolve().parents[2]
FLOOD_SECONDS = 2.0
FD_LIMIT = 4096  # the sidecar's RLIMIT_NOFILE in these tests: a runaway hits it fast
PR_SET_PDEATHSIG = 1


@dataclass
class Peer:
    process: subprocess.Popen[str]
    out: Path

    def accepts(self) -> int:
        return self.out.read_text().count("accept\n")

    def requests(self) -> int:
        return self.out.read_text().count("request\n")


@dataclass
class Sidecar:
    process: subprocess.Popen[str]
    outbound: int
    inbound: int
    admin: int
    stderr: Path
    app: Peer
    certs: dict[str, tuple[Path, Path, Path]] = field(default_factory=dict)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self) -> int:
        return sum(1 for _ in Path(f"/proc/{self.process.pid}/fd").iterdir())

    def tls(self, service_account: str) -> ssl.SSLContext:
        cert, key, ca = self.certs[service_account]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        return context


def _dies_with_us() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _sidecar_child() -> None:
    _dies_with_us()
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _start_app(tmp_path: Path) -> Peer:
    out = tmp_path / "app.out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.sidecar.h2peers", "app"],
            stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=ROOT, preexec_fn=_dies_with_us,
        )  # fmt: skip

    def listening() -> bool:
        assert process.poll() is None, out.read_text()
        return "port " in out.read_text()

    waiting.eventually_sync(
        listening, timeout=20, message=out.read_text, interval=0.05, error=AssertionError
    )
    return Peer(process, out)


def _app_port(app: Peer) -> int:
    line = next(x for x in app.out.read_text().splitlines() if x.startswith("port "))
    return int(line.split()[1])


@pytest.fixture
def sidecar_process(tmp_path: Path, pki: Pki, request: pytest.FixtureRequest) -> Iterator[Sidecar]:
    """`smimesh sidecar run` with an outbound Service `app` and a strict-mTLS inbound port
    that lets only `web` in, both to the h2 app; more flags come as an indirect parameter."""
    extra: list[str] = list(getattr(request, "param", []))
    app = _start_app(tmp_path)
    try:
        yield from _sidecar_in_front_of(app, tmp_path, pki, extra)
    finally:
        if app.process.poll() is None:
            app.process.kill()
        app.process.wait()


def _sidecar_in_front_of(
    app: Peer, tmp_path: Path, pki: Pki, extra: list[str]
) -> Iterator[Sidecar]:
    app_port = _app_port(app)
    inbound_port, outbound, admin = free_port(), free_port(), free_port()
    rule = inbound.InboundRule(target=f"{NS}/web-to-app", sources=(spiffe(NS, "web"),))
    path = tmp_path / "proxy.json"
    path.write_bytes(
        config(
            outbound_services=(
                service("app", [("127.0.0.1", app_port, "app-1")], protocol="http2"),
            ),
            inbound_ports=(
                inbound.InboundPort(
                    port=inbound_port, app_port=app_port, protocol="http2", rules=(rule,)
                ),
            ),
        ).to_json()
    )
    certs = {sa: pki.files(NS, sa) for sa in ("api", "web", "intruder")}
    cert, key, ca = certs["api"]
    stderr = tmp_path / "sidecar.err"
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            [SMIMESH, "sidecar", "run", "--config", str(path), "--outbound-port", str(outbound),
             "--admin-port", str(admin), "--admin-host", "127.0.0.1",
             "--inbound-host", "127.0.0.1", "--cert", str(cert), "--key", str(key),
             "--trust-bundle", str(ca), "--drain-seconds", "1", *extra],
            stdout=subprocess.DEVNULL, stderr=sink, text=True, preexec_fn=_sidecar_child,
        )  # fmt: skip
    item = Sidecar(process, outbound, inbound_port, admin, stderr, app, certs)
    try:
        until_ready(process, admin, inbound=inbound_port, output=stderr.read_text)
        yield item
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Samples:
    rss_mb: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


async def _sample(sidecar: Sidecar, into: Samples, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            into.rss_mb.append(sidecar.rss_mb())
            into.fds.append(sidecar.fds())
        except (OSError, StopIteration):
            return  # the process is gone: the assertions below say so
        await asyncio.sleep(0.02)


async def _legitimate(client: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[float]:
    """Sequential requests until `stop`; a failed or timed-out one counts as infinitely slow."""
    latencies: list[float] = []
    while not stop.is_set() and len(latencies) < 20_000:
        started = time.perf_counter()
        try:
            response = await client.get(url, headers={"host": "app"})
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append(time.perf_counter() - started if ok else math.inf)
    return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _flood(port: int, *, tls: tuple[Path, Path, Path] | None = None) -> dict[str, Any]:
    args = [sys.executable, "-m", "tests.sidecar.h2peers", "flood", "127.0.0.1", str(port),
            str(FLOOD_SECONDS)]  # fmt: skip
    if tls is not None:
        args += ["--cert", str(tls[0]), "--key", str(tls[1]), "--ca", str(tls[2])]
    # At nice 10: on a shared 2-core CI machine the attacker must not win by taking the
    # legitimate client's CPU (a real one sits on another host); it still floods at full
    # speed whenever a core is free.
    process = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        "10",
        *args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_dies_with_us,
    )
    out, err = await asyncio.wait_for(process.communicate(), FLOOD_SECONDS + 30)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@dataclass
class Outcome:
    seen: dict[str, Any]
    rss_growth_mb: float
    fd_growth: int
    upstream_connections: int
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int
    cpu_share: float


async def _attack(
    sidecar: Sidecar, client: httpx.AsyncClient, url: str, port: int, tls: Any = None
) -> Outcome:
    # Warm up: the legitimate client's own connections exist before the baseline.
    for _ in range(20):
        assert (await client.get(url, headers={"host": "app"})).status_code == 200
    base_rss, base_fds, base_accepts = sidecar.rss_mb(), sidecar.fds(), sidecar.app.accepts()
    base_cpu = sidecar.cpu_seconds()
    samples, stop = Samples(), asyncio.Event()
    sampler = asyncio.create_task(_sample(sidecar, samples, stop))
    legit = asyncio.create_task(_legitimate(client, url, stop))
    try:
        seen = await _flood(port, tls=tls)
    finally:
        stop.set()
        latencies = await legit
        await sampler
    outcome = Outcome(
        seen,
        rss_growth_mb=max(samples.rss_mb, default=math.inf) - base_rss,
        fd_growth=max(samples.fds, default=FD_LIMIT) - base_fds,
        upstream_connections=sidecar.app.accepts() - base_accepts,
        p50_ms=_quantile(latencies, 0.50) * 1000,
        p99_ms=_quantile(latencies, 0.99) * 1000,
        requests=len(latencies),
        failed=latencies.count(math.inf),
        cpu_share=(sidecar.cpu_seconds() - base_cpu) / FLOOD_SECONDS,
    )
    print(f"rapid reset: {outcome}")
    return outcome


# Bounds. Measured with the fix on a shared 2-core machine (load 4-9, several test runs
# beside ours), 2 s floods: sidecar RSS grew by 0.5-3 MB, fds by 1-2, 0 upstream connections
# (every reset stream's handler was cancelled before it started), legitimate p99 30-280 ms
# (p50 2-35 ms) against 16-124 ms with no attack in the same runs. Each bound leaves at least
# 2.5x headroom over the worst run. Before the fix the same floods grew RSS by 29-95 MB in
# 2 s, fds by up to 4078 (the limit is 4096), opened 500-2600 upstream connections, made the
# legitimate p99 1.3-3.9 s or failed requests outright, and logged 300-14,400 tracebacks.
MAX_RSS_GROWTH_MB = 25.0
MAX_FD_GROWTH = 32
MAX_UPSTREAM_CONNECTIONS = 4
MAX_P99_MS = 750.0


def _assert_survived(sidecar: Sidecar, outcome: Outcome) -> None:
    assert sidecar.process.poll() is None, "the sidecar died"
    assert outcome.seen["goaway"].get("ENHANCE_YOUR_CALM", 0) >= 1, outcome.seen
    assert outcome.rss_growth_mb < MAX_RSS_GROWTH_MB, outcome
    assert outcome.fd_growth < MAX_FD_GROWTH, outcome
    assert outcome.upstream_connections <= MAX_UPSTREAM_CONNECTIONS, outcome
    assert outcome.seen["streams"] >= 400, outcome  # the attack did happen (2x the budget)
    assert outcome.failed == 0, outcome
    assert outcome.requests >= 20, outcome  # the client was not starved
    assert outcome.p99_ms < MAX_P99_MS, outcome
    assert "Traceback" not in sidecar.stderr.read_text()


async def test_rapid_reset_flood_on_the_outbound_port_gets_enhance_your_calm(
    sidecar_process: Sidecar,
) -> None:
    sidecar = sidecar_process
    url = f"http://127.0.0.1:{sidecar.outbound}/"
    async with httpx.AsyncClient(http1=False, http2=True, timeout=5) as client:
        outcome = await _attack(sidecar, client, url, sidecar.outbound)
    _assert_survived(sidecar, outcome)


async def test_rapid_reset_flood_from_a_denied_identity_gets_enhance_your_calm(
    sidecar_process: Sidecar,
) -> None:
    sidecar = sidecar_process
    url = f"https://127.0.0.1:{sidecar.inbound}/"
    tls = sidecar.tls("web")
    async with httpx.AsyncClient(http1=False, http2=True, verify=tls, timeout=5) as client:
        outcome = await _attack(
            sidecar, client, url, sidecar.inbound, tls=sidecar.certs["intruder"]
        )
    _assert_survived(sidecar, outcome)


class RawClient:
    """The h2 library as a client on one downstream connection to the sidecar."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.statuses: list[bytes] = []

    @classmethod
    async def to(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def get(self, path: str, count: int) -> list[int]:
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "app"),
                   (":path", path)]  # fmt: skip
        ids = []
        for _ in range(count):
            ids.append(self.conn.get_next_available_stream_id())
            self.conn.send_headers(ids[-1], headers, end_stream=True)
        self.writer.write(self.conn.data_to_send())
        return ids

    def reset(self, ids: list[int]) -> None:
        for stream_id in ids:
            self.conn.reset_stream(stream_id)
        self.writer.write(self.conn.data_to_send())

    async def responses(self, count: int) -> list[bytes]:
        while len(self.statuses) < count:
            data = await self.reader.read(65536)
            assert data, self.statuses
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    self.statuses.append(dict(event.headers or [])[b":status"])
            self.writer.write(self.conn.data_to_send())
        return self.statuses


async def test_concurrent_streams_share_one_upstream_connection(
    sidecar_process: Sidecar,
) -> None:
    """50 streams at once on one downstream connection, to an upstream not yet connected:
    one pending connect is shared, not one per stream."""
    sidecar = sidecar_process
    client = await RawClient.to(sidecar.outbound)
    client.get("/?sleep=0.3", 50)
    async with asyncio.timeout(10):
        assert await client.responses(50) == [b"200"] * 50
    client.writer.close()
    assert sidecar.app.accepts() == 1


async def test_a_reset_stream_frees_its_upstream_stream_at_once(sidecar_process: Sidecar) -> None:
    """100 slow streams fill the one upstream connection (at most 100 streams before the
    app's SETTINGS); the client resets them all; 100 new streams then go over that same
    connection and are answered long before the slow ones would have been."""
    sidecar = sidecar_process
    client = await RawClient.to(sidecar.outbound)
    slow = client.get("/?sleep=3", 100)
    await waiting.eventually(  # all in flight at the app (only its output tells)
        lambda: sidecar.app.requests() >= 100,
        timeout=10,
        message="the 100 slow streams never all reached the app",
        interval=0.02,
    )
    started = time.monotonic()
    client.reset(slow)
    client.get("/", 100)
    async with asyncio.timeout(10):
        assert await client.responses(100) == [b"200"] * 100
    assert time.monotonic() - started < 2.0  # the slow ones would answer after 3 s
    assert sidecar.app.accepts() == 1
    client.writer.close()
    assert "Traceback" not in sidecar.stderr.read_text()


# -- idle connections and the connection cap --------------------------------------------------


async def _h2_preface(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    await writer.drain()
    return reader, writer


async def _ending(reader: asyncio.StreamReader) -> tuple[list[int], bool]:
    """Read until EOF: the GOAWAY error codes received and whether the peer closed."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    codes: list[int] = []
    try:
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    codes.append(int(event.error_code or 0))
    except (ConnectionError, h2.exceptions.ProtocolError):
        pass
    return codes, True


IDLE = ["--h2-idle-timeout", "1", "--max-connections", "100"]


@pytest.mark.parametrize("sidecar_process", [IDLE], indirect=True)
async def test_idle_h2_connections_are_closed_and_the_cap_refuses_the_rest(
    sidecar_process: Sidecar,
) -> None:
    sidecar = sidecar_process
    base_fds = sidecar.fds()
    # 300 idle h2 connections against a cap of 100: the 200 past it are closed at once.
    opened = [await _h2_preface(sidecar.outbound) for _ in range(300)]
    async with asyncio.timeout(5):  # "at once": well before the 1 s idle timeout ends twice
        ends = await asyncio.gather(*(_ending(r) for r, _ in opened[100:]))
    assert all(closed for _, closed in ends)
    assert sidecar.fds() - base_fds <= 100 + 16
    async with httpx.AsyncClient() as admin:
        text = (await admin.get(f"http://127.0.0.1:{sidecar.admin}/metrics")).text
    assert 'smimesh_connections_refused_total{listener="outbound"} 200.0' in text
    # The 100 admitted ones are idle: each gets GOAWAY NO_ERROR after 1 s, then EOF.
    started = time.monotonic()
    async with asyncio.timeout(10):
        kept = await asyncio.gather(*(_ending(r) for r, _ in opened[:100]))
    assert all(codes == [0] for codes, _ in kept), kept[:3]
    assert time.monotonic() - started < 5
    for _, writer in opened:
        writer.close()
    # Afterwards a legitimate client is served.
    async with httpx.AsyncClient(http1=False, http2=True, timeout=5) as client:
        response = await client.get(
            f"http://127.0.0.1:{sidecar.outbound}/", headers={"host": "app"}
        )
    assert response.status_code == 200
