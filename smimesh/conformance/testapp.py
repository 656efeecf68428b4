"""The conformance test app: an HTTP server that answers, calls others on request, and counts.

- `/echo` (any method): 200 with what it received.
- `POST /call` with JSON `{url, method, headers, body, count, concurrency}`: the app itself
  makes the request `count` times, `concurrency` at once (default 1), through its sidecar
  (HTTP_PROXY), recording success for 200-399 and failure otherwise; answers with the tally.
- `GET /metrics`: JSON `{name, received: {caller: n}, paths: {path: n},
  calls: {url: {ok, failed, codes}}, errors: [...]}`, `errors` being the last calls that
  ended without a status (when, the URL, the exception and its cause); `DELETE /metrics`
  resets.
It names itself (SMIMESH_WORKLOAD) in the `x-smimesh-caller` header of its own calls, so the
callee can count callers.

A release can be made bad on purpose (the canary tests): `SMIMESH_APP_FAILURES` (a share,
0..1) of the mesh port's requests are answered 500, spread evenly, and `SMIMESH_APP_DELAY_MS`
delays each; the control port is never faulted. And the app can be a load generator inside
the mesh, as Flagger's loadtester is: with `SMIMESH_LOAD_URL` it calls that URL
`SMIMESH_LOAD_RPS` times a second (default 20) from `SMIMESH_LOAD_WORKERS` threads (default
4, at most 32; a worker that falls behind skips slots, never queues them), tallied under
`calls` like `/call`. Run by local workloads (`python -m smimesh.conformance.testapp`)
and, in Pods, as `smimesh conformance app` from the smimesh image. With a control port
(CONTROL_PORT) it serves the same endpoints and counts there too: on Pods that port is
excluded from the mesh's interception, so the suite reaches `/call` and `/metrics` even
where strict mTLS refuses everyone else.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import queue
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

CALLER_HEADER = "x-smimesh-caller"
MAX_BODY = 1 << 20
MAX_COUNT = 10_000
MAX_WORKERS = 32
MAX_ERRORS = 50  # the transport errors kept for `/metrics`: the newest


class Tally:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.received: Counter[str] = Counter()
            self.paths: Counter[str] = Counter()
            self.calls: dict[str, dict[str, Any]] = defaultdict(
                lambda: {"ok": 0, "failed": 0, "codes": Counter()}
            )
            self.errors: deque[dict[str, str]] = deque(maxlen=MAX_ERRORS)

    def error(self, url: str, exc: Exception) -> None:
        """Keep what ended a call without a status: the codes say only the exception's name."""
        cause = exc.__cause__ or exc.__context__
        entry = {
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "url": url,
            "error": f"{type(exc).__name__}: {exc}",
            "cause": repr(cause) if cause is not None else "",
        }
        with self.lock:
            self.errors.append(entry)

    def record(self, url: str, codes: Counter[str]) -> tuple[int, int]:
        """Count calls to `url` by outcome (200-399 ok, anything else failed); (ok, failed)."""
        ok = sum(n for code, n in codes.items() if code.isdigit() and 200 <= int(code) < 400)
        failed = sum(codes.values()) - ok
        with self.lock:
            entry = self.calls[url]
            entry["ok"] += ok
            entry["failed"] += failed
            entry["codes"].update(codes)
        return ok, failed

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "name": self.name,
                "received": dict(self.received),
                "paths": dict(self.paths),
                "calls": {
                    url: {"ok": c["ok"], "failed": c["failed"], "codes": dict(c["codes"])}
                    for url, c in self.calls.items()
                },
                "errors": list(self.errors),
            }


class Faults:
    """A deliberately bad release: answers `failures` of its requests with 500, spread evenly
    (request n fails when floor(n * failures) grows), and delays each by `delay` seconds."""

    def __init__(self, failures: float = 0.0, delay: float = 0.0) -> None:
        if not (0.0 <= failures <= 1.0 and delay >= 0.0):
            raise ValueError(f"failures must be 0..1 and delay >= 0, not {failures}, {delay}")
        self.failures, self.delay = failures, delay
        self._lock = threading.Lock()
        self._seen = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults:
        try:
            failures = float(env.get("SMIMESH_APP_FAILURES") or 0)
            delay = float(env.get("SMIMESH_APP_DELAY_MS") or 0) / 1000
            return cls(failures, delay)
        except ValueError as exc:
            raise SystemExit(f"error: SMIMESH_APP_FAILURES / SMIMESH_APP_DELAY_MS: {exc}") from exc

    def fails(self) -> bool:
        """Whether this request is one of the failing share (after the delay, if any)."""
        if self.delay:
            time.sleep(self.delay)
        if not self.failures:
            return False
        with self._lock:
            self._seen += 1
            seen = self._seen
        return math.floor(seen * self.failures) > math.floor((seen - 1) * self.failures)


@dataclass(frozen=True)
class Load:
    """Steady calls to one URL from inside the mesh: `rps` a second over `workers` threads."""

    url: str
    rps: float = 20.0
    workers: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Load | None:
        url = env.get("SMIMESH_LOAD_URL")
        if not url:
            return None
        try:
            load = cls(url, float(env.get("SMIMESH_LOAD_RPS") or 20),
                       int(env.get("SMIMESH_LOAD_WORKERS") or 4))  # fmt: skip
        except ValueError as exc:
            raise SystemExit(f"error: SMIMESH_LOAD_RPS / SMIMESH_LOAD_WORKERS: {exc}") from exc
        if not (load.rps > 0 and 1 <= load.workers <= MAX_WORKERS):
            raise SystemExit(f"error: SMIMESH_LOAD_RPS must be > 0 and workers 1..{MAX_WORKERS}")
        return load

    def start(
        self, tally: Tally, headers: Mapping[str, str], new_client: ClientFactory | None = None
    ) -> None:
        """Start the worker threads (daemons: they end with the process), each with a client
        of its own (`new_client()`)."""
        period = self.workers / self.rps
        for index in range(self.workers):
            offset = index * period / self.workers
            args = (tally, new_client or _client, dict(headers), period, offset)
            threading.Thread(target=self._work, args=args, name=f"load-{index}",
                             daemon=True).start()  # fmt: skip

    def _work(
        self, tally: Tally, new_client: ClientFactory, headers: dict[str, str], period: float,
        offset: float,
    ) -> None:  # fmt: skip
        client = new_client()
        due = time.monotonic() + offset
        while True:
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            elif now - due > period:  # behind: skip the missed slots rather than burst
                due = now
            due += period
            code = _request(client, "GET", self.url, headers, b"", tally)
            tally.record(self.url, Counter([code]))


def _request(
    client: httpx.Client, method: str, url: str, headers: Mapping[str, str], content: bytes,
    tally: Tally,
) -> str:  # fmt: skip
    """One call: its status code, or the name of the error that ended it (kept in `tally`)."""
    try:
        response = client.request(method, url, headers=headers, content=content)
    except httpx.HTTPError as exc:
        tally.error(url, exc)
        return type(exc).__name__
    return str(response.status_code)


def _handler(
    tally: Tally, new_client: ClientFactory, faults: Faults | None = None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                raise ValueError(f"body over {MAX_BODY} bytes")
            return self.rfile.read(length) if length else b""

        def _any(self) -> None:
            try:
                body = self._body()
            except ValueError as exc:
                self._reply(413, {"error": str(exc)})
                return
            path = self.path.split("?", 1)[0]
            if faults is not None and faults.fails():
                with tally.lock:
                    tally.received[self.headers.get(CALLER_HEADER, "unknown")] += 1
                    tally.paths[path] += 1
                self._reply(500, {"app": tally.name, "error": "failing on purpose"})
                return
            with tally.lock:
                tally.received[self.headers.get(CALLER_HEADER, "unknown")] += 1
                tally.paths[path] += 1
            if path == "/call" and self.command == "POST":
                self._call(body)
            elif path == "/metrics" and self.command == "GET":
                self._reply(200, tally.snapshot())
            elif path == "/metrics" and self.command == "DELETE":
                tally.reset()
                self._reply(200, {"reset": True})
            else:
                self._reply(
                    200,
                    {
                        "app": tally.name,
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body.decode(errors="replace"),
                    },
                )

        def _call(self, body: bytes) -> None:
            try:
                order = json.loads(body or b"{}")
                url, count = str(order["url"]), int(order.get("count", 1))
                if not 1 <= count <= MAX_COUNT:
                    raise ValueError(f"count must be 1..{MAX_COUNT}")
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, {"error": f"bad /call order: {exc}"})
                return
            headers = {**order.get("headers", {}), CALLER_HEADER: tally.name}
            content = str(order.get("body", "")).encode()
            method = str(order.get("method", "GET"))

            workers = max(1, min(int(order.get("concurrency", 1)), MAX_WORKERS))
            idle: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
            clients = [new_client() for _ in range(workers)]
            for made in clients:
                idle.put(made)

            def once(_: int) -> str:
                client = idle.get()  # one call per client at a time: see ClientFactory
                try:
                    return _request(client, method, url, headers, content, tally)
                finally:
                    idle.put(client)

            try:
                with ThreadPoolExecutor(workers) as pool:
                    codes: Counter[str] = Counter(pool.map(once, range(count)))
            finally:
                for made in clients:
                    made.close()
            ok, failed = tally.record(url, codes)
            self._reply(200, {"url": url, "ok": ok, "failed": failed, "codes": dict(codes)})

        # http.server dispatches on these names; every method gets the same treatment.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tally is the record."""

    return Handler


def _client() -> httpx.Client:
    return httpx.Client(trust_env=True, timeout=10.0)


ClientFactory = Callable[[], httpx.Client]
"""Makes the HTTP client of one thread. A client is never used by two threads at once: with
one shared by the load workers, a call now and then ended in `ReadError: [Errno 9] Bad file
descriptor`, its connection closed under it by another thread (seen in the canary tests,
about once per run of 20,000 calls)."""


def serve(
    host: str, port: int, name: str, *, tally: Tally | None = None, faults: Faults | None = None,
    new_client: ClientFactory | None = None,
) -> ThreadingHTTPServer:  # fmt: skip
    handler = _handler(tally or Tally(name), new_client or _client, faults)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def run(
    host: str,
    port: int,
    name: str,
    *,
    control_port: int | None = None,
    faults: Faults | None = None,
    load: Load | None = None,
) -> None:
    """Serve `port` (faulted as `faults` says) and `control_port`, sharing one tally, and
    run `load` if given, until the process ends."""
    tally = Tally(name)
    servers = [serve(host, port, name, tally=tally, faults=faults)]
    if control_port is not None and control_port != port:
        servers.append(serve(host, control_port, name, tally=tally))
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, name="control", daemon=True).start()
    if load is not None:
        load.start(tally, {CALLER_HEADER: name})
    servers[0].serve_forever()


def main() -> None:
    host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))
    control = os.environ.get("CONTROL_PORT")
    name = os.environ.get("SMIMESH_WORKLOAD", "testapp")
    faults = Faults.from_env(os.environ)
    run(host, port, name, control_port=int(control) if control else None,
        faults=faults if faults.failures or faults.delay else None,
        load=Load.from_env(os.environ))  # fmt: skip


if __name__ == "__main__":
    main()
