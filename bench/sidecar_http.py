"""Sidecar benchmark: HTTP/1.1 keep-alive on loopback, all in one run.

Targets: the app directly; one sidecar (client side, plaintext to the app); a sidecar pair
(client sidecar -> mTLS -> server sidecar -> app, as in the mesh); HAProxy and nginx from
Debian as plain reverse proxies (installed with apt when missing and possible). The load
generator is wrk (Debian): one connection for latency (p50/p99, so the numbers are the
per-request cost, not queueing), 32 connections for throughput at saturation. Prints added
latency against direct and throughput ratios against direct and HAProxy, and each proxy's RSS.

Usage: python bench/sidecar_http.py [--seconds 5] [--no-install]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from smimesh._aio import waiting
from smimesh.identity import authority, keys, spiffe
from smimesh.proxyconfig import inbound, outbound, refs, snapshots

SMIMESH = str(Path(sys.executable).with_name("smimesh"))
NS = "bench"
TRUST = "cluster.local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_tools(install: bool) -> None:
    missing = [tool for tool in ("wrk", "nginx", "haproxy") if shutil.which(tool) is None]
    if not missing or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    print(f"installing with apt: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    packages = ["nginx-light" if tool == "nginx" else tool for tool in missing]
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, check=False,
                   capture_output=True)  # fmt: skip


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float | None = None


def wrk(
    url: str, *, connections: int, seconds: float, threads: int = 1
) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one wrk run."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return rps, _percentile(out, "50%"), _percentile(out, "99%")


def _percentile(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def wait_http(url: str, *, within: float = 20.0) -> None:
    waiting.eventually_sync(
        lambda: httpx.get(url, timeout=1.0).status_code == 200,
        timeout=within,
        message=f"{url} never answered 200",
        interval=0.1,
        ignoring=(httpx.HTTPError,),
        error=RuntimeError,
    )


class Processes:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.terminate()
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


NGINX_APP = """
worker_processes 1; daemon off; pid {dir}/app.pid; error_log {dir}/app-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hello from the app\\n"; }} }} }}
"""
NGINX_PROXY = """
worker_processes 1; daemon off; pid {dir}/proxy.pid; error_log {dir}/proxy-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream app {{ server 127.0.0.1:{app}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://app; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
"""
HAPROXY = """
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend bench
  bind 127.0.0.1:{port}
  default_backend app
backend app
  server app 127.0.0.1:{app}
"""
PY_APP = """
import asyncio, uvloop
BODY = b"HTTP/1.1 200 OK\\r\\ncontent-length: 19\\r\\n\\r\\nhello from the app\\n"
class App(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, data):
        self.t.write(BODY * data.count(b"\\r\\n\\r\\n"))
async def main():
    server = await asyncio.get_running_loop().create_server(App, "127.0.0.1", {port})
    await server.serve_forever()
uvloop.run(main())
"""


def _service(name: str, address: str, port: int, *, meshed: bool) -> outbound.OutboundService:
    return outbound.OutboundService(
        service=refs.ServiceRef(namespace=NS, name=name),
        hostnames=(name,),
        ports=(outbound.ServicePort(port=80, target_port=port, protocol="http"),),
        endpoints=(
            outbound.Endpoint(
                address=address, pod=f"{name}-0", meshed=meshed,
                identity=f"spiffe://{TRUST}/ns/{NS}/sa/{name}",
            ),
        ),
    )  # fmt: skip


def _config(sa: str, **parts: object) -> bytes:
    return snapshots.ProxyConfig.build(
        proxy=refs.ProxyRef(namespace=NS, service_account=sa, pod=f"{sa}-0"),
        identity=f"spiffe://{TRUST}/ns/{NS}/sa/{sa}",
        settings=snapshots.MeshSettings(),
        **parts,  # type: ignore[arg-type]
    ).to_json()


def _credentials(ca: authority.CertificateAuthority, directory: Path, sa: str) -> list[str]:
    key = keys.generate_key()
    identity = spiffe.for_service_account(TRUST, NS, sa)
    issued = ca.sign(keys.build_request(key, identity), expected=identity)
    paths = [directory / f"{sa}.crt", directory / f"{sa}.key", directory / "ca.crt"]
    paths[0].write_bytes(issued.chain_pem())
    paths[1].write_bytes(keys.key_to_pem(key))
    paths[2].write_bytes(keys.certificates_to_pem((ca.root,)))
    return ["--cert", str(paths[0]), "--key", str(paths[1]), "--trust-bundle", str(paths[2])]


@contextlib.contextmanager
def targets(directory: Path) -> Iterator[dict[str, tuple[str, int | None]]]:
    """Start the app and every proxy; yield name -> (url, pid of the proxy to measure)."""
    procs = Processes()
    found: dict[str, tuple[str, int | None]] = {}
    try:
        app = free_port()
        if shutil.which("nginx"):
            (directory / "app.conf").write_text(NGINX_APP.format(dir=directory, port=app))
            procs.start("nginx", "-p", str(directory), "-c", str(directory / "app.conf"))
            app_kind = "nginx"
        else:
            procs.start(sys.executable, "-c", PY_APP.format(port=app))
            app_kind = "python (uvloop)"
        wait_http(f"http://127.0.0.1:{app}/")
        print(f"app: {app_kind} on 127.0.0.1:{app}", flush=True)
        found["direct"] = (f"http://127.0.0.1:{app}/", None)

        # one sidecar, explicit local port per Service, plaintext to the app
        local, admin = free_port(), free_port()
        (directory / "one.json").write_bytes(
            _config("client", outbound=(_service("app", "127.0.0.1", app, meshed=False),))
        )
        one = procs.start(
            SMIMESH, "sidecar", "run", "--config", str(directory / "one.json"),
            "--local-service", f"{local}=bench/app:80", "--outbound-port", str(free_port()),
            "--admin-port", str(admin), "--admin-host", "127.0.0.1", "--log-level", "WARNING",
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{local}/")
        found["sidecar"] = (f"http://127.0.0.1:{local}/", one.pid)

        # a sidecar pair with mTLS between them, as two meshed pods would be
        ca = authority.create(TRUST)
        inbound_port, pair_local = free_port(), free_port()
        (directory / "app.json").write_bytes(
            _config(
                "app",
                inbound=(
                    inbound.InboundPort(
                        port=inbound_port, app_port=app, protocol="http",
                        rules=(inbound.InboundRule(
                            target=f"{NS}/all", sources=(f"spiffe://{TRUST}/ns/{NS}/sa/client",)
                        ),),
                    ),
                ),
            )
        )  # fmt: skip
        (directory / "client.json").write_bytes(
            _config("client", outbound=(_service("app", "127.0.0.1", inbound_port, meshed=True),))
        )
        for sa, extra in (
            ("app", []),
            ("client", ["--local-service", f"{pair_local}=bench/app:80"]),
        ):
            procs.start(
                SMIMESH, "sidecar", "run", "--config", str(directory / f"{sa}.json"),
                "--outbound-port", str(free_port()), "--admin-port", str(free_port()),
                "--admin-host", "127.0.0.1", "--inbound-host", "127.0.0.1",
                "--log-level", "WARNING", *_credentials(ca, directory, sa), *extra,
            )  # fmt: skip
        wait_http(f"http://127.0.0.1:{pair_local}/")
        found["sidecar pair (mTLS)"] = (f"http://127.0.0.1:{pair_local}/", procs.started[-1].pid)

        if shutil.which("haproxy"):
            port = free_port()
            (directory / "haproxy.cfg").write_text(HAPROXY.format(port=port, app=app))
            haproxy = procs.start("haproxy", "-f", str(directory / "haproxy.cfg"))
            wait_http(f"http://127.0.0.1:{port}/")
            found["haproxy"] = (f"http://127.0.0.1:{port}/", haproxy.pid)
        if shutil.which("nginx"):
            port = free_port()
            (directory / "proxy.conf").write_text(
                NGINX_PROXY.format(dir=directory, port=port, app=app)
            )
            nginx = procs.start("nginx", "-p", str(directory), "-c", str(directory / "proxy.conf"))
            wait_http(f"http://127.0.0.1:{port}/")
            found["nginx"] = (f"http://127.0.0.1:{port}/", nginx.pid)
        yield found
    finally:
        procs.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--only", action="append", help="Measure only these targets (+direct).")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the sidecars under load (needs py-spy)."
    )
    args = parser.parse_args()
    ensure_tools(not args.no_install)
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="smimesh-bench-") as tmp, targets(Path(tmp)) as found:
        for name, (url, pid) in found.items():
            if args.only and name != "direct" and name not in args.only:
                continue
            wrk(url, connections=4, seconds=1)  # warm up: pools, caches
            _, p50, p99 = wrk(url, connections=1, seconds=args.seconds)
            if args.profile and pid and name.startswith("sidecar"):
                load = subprocess.Popen(
                    ["wrk", "-t1", f"-c{args.connections}", f"-d{max(1, round(args.seconds))}s",
                     url], stdout=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(0.5)
                print(f"  py-spy of {name}:\n{profile(pid, args.seconds / 2)}", flush=True)
                load.wait()
            rps, _, _ = wrk(url, connections=args.connections, seconds=args.seconds)
            results.append(Result(name, rps, p50, p99, rss_mb(pid) if pid else None))
            print(f"  measured {name}", flush=True)
    report(results, args)


def profile(pid: int, seconds: float, top: int = 12) -> str:
    """The functions the process spends its own time in (py-spy, leaf frames)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        done = subprocess.run(
            [spy, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "250",
             "-f", "raw", "-o", out.name, "--nonblocking"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            return f"    (py-spy failed: {done.stderr.strip()[:200]})"
        leaves: collections.Counter[str] = collections.Counter()
        for line in Path(out.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            leaves[stack.split(";")[-1]] += int(count)
    total = sum(leaves.values()) or 1
    return "\n".join(
        f"    {100 * n / total:5.1f}%  {frame}" for frame, n in leaves.most_common(top)
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    by_name = {r.name: r for r in results}
    direct, haproxy = by_name["direct"], by_name.get("haproxy")
    print()
    print(f"HTTP/1.1 keep-alive on loopback, {os.cpu_count()} cores; latency with 1 connection,")
    print(f"throughput with {args.connections} connections, {args.seconds:g} s each (wrk)")
    print()
    header = (f"{'target':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
              f"{'+p99 ms':>8} {'rps/direct':>10} {'rps/haproxy':>11} {'RSS MB':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in results:
        vs_haproxy = f"{r.rps / haproxy.rps:11.2f}" if haproxy else f"{'-':>11}"
        rss = f"{r.rss_mb:7.1f}" if r.rss_mb is not None else f"{'-':>7}"
        print(
            f"{r.name:<20} {r.rps:9.0f} {r.p50_ms:8.3f} {r.p99_ms:8.3f} "
            f"{r.p50_ms - direct.p50_ms:8.3f} {r.p99_ms - direct.p99_ms:8.3f} "
            f"{r.rps / direct.rps:10.2f} {vs_haproxy} {rss}"
        )


if __name__ == "__main__":
    main()
