"""The conformance test app: an HTTP server that answers, calls others on request, and counts.

- `/echo` (any method): 200 with what it received.
- `POST /call` with JSON `{url, method, headers, body, count, concurrency}`: the app itself
  makes the request `count` times, `concurrency` at once (default 1), through its sidecar
  (HTTP_PROXY), recording success for 200-399 and failure otherwise; answers with the tally.
- `GET /metrics`: JSON `{name, received: {caller: n}, paths: {path: n},
  calls: {url: {ok, failed, codes}}}`; `DELETE /metrics` resets.
It names itself (SMIMESH_WORKLOAD) in the `x-smimesh-caller` header of its own calls, so the
callee can count callers. Run by local workloads (`python -m smimesh.conformance.testapp`)
and, in Pods, as `smimesh conformance app` from the smimesh image. With a control port
(CONTROL_PORT) it serves the same endpoints and counts there too: on Pods that port is
excluded from the mesh's interception, so the suite reaches `/call` and `/metrics` even
where strict mTLS refuses everyone else.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

CALLER_HEADER = "x-smimesh-caller"
MAX_BODY = 1 << 20
MAX_COUNT = 10_000


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
            }


def _handler(tally: Tally, client: httpx.Client) -> type[BaseHTTPRequestHandler]:
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

            def once(_: int) -> str:
                try:
                    response = client.request(method, url, headers=headers, content=content)
                except httpx.HTTPError as exc:
                    return type(exc).__name__
                return str(response.status_code)

            workers = max(1, min(int(order.get("concurrency", 1)), 32))
            with ThreadPoolExecutor(workers) as pool:
                codes: Counter[str] = Counter(pool.map(once, range(count)))
            ok = sum(n for code, n in codes.items() if code.isdigit() and 200 <= int(code) < 400)
            failed = count - ok
            with tally.lock:
                entry = tally.calls[url]
                entry["ok"] += ok
                entry["failed"] += failed
                entry["codes"].update(codes)
            self._reply(200, {"url": url, "ok": ok, "failed": failed, "codes": dict(codes)})

        # http.server dispatches on these names; every method gets the same treatment.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tally is the record."""

    return Handler


def serve(host: str, port: int, name: str, *, tally: Tally | None = None) -> ThreadingHTTPServer:
    client = httpx.Client(trust_env=True, timeout=10.0)
    server = ThreadingHTTPServer((host, port), _handler(tally or Tally(name), client))
    server.daemon_threads = True
    return server


def run(host: str, port: int, name: str, *, control_port: int | None = None) -> None:
    """Serve `port` (and `control_port`, sharing one tally) until the process ends."""
    tally = Tally(name)
    servers = [serve(host, port, name, tally=tally)]
    if control_port is not None and control_port != port:
        servers.append(serve(host, control_port, name, tally=tally))
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, name="control", daemon=True).start()
    servers[0].serve_forever()


def main() -> None:
    host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))
    control = os.environ.get("CONTROL_PORT")
    name = os.environ.get("SMIMESH_WORKLOAD", "testapp")
    run(host, port, name, control_port=int(control) if control else None)


if __name__ == "__main__":
    main()
