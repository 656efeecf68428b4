"""The test app's bad-release and load-generator modes (what the canary tests build on): the
failing share is exact and evenly spread, the delay is added, the control port is never
faulted, and a loader calls its URL at about the rate asked, tallying outcomes."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

import httpx
import pytest

from smimesh._aio import waiting
from smimesh.conformance import testapp


@pytest.mark.fast
@pytest.mark.parametrize("share", [0.0, 0.05, 0.25, 0.5, 1.0])
def test_the_failing_share_is_exact_and_spread_evenly(share: float) -> None:
    faults = testapp.Faults(share)
    outcomes = [faults.fails() for _ in range(200)]
    assert sum(outcomes) == round(200 * share)
    # Evenly: every window of 20 requests holds its share, give or take one.
    for start in range(0, 200, 20):
        assert abs(sum(outcomes[start : start + 20]) - 20 * share) <= 1


@pytest.mark.fast
def test_bad_settings_stop_with_a_message() -> None:
    with pytest.raises(SystemExit, match="SMIMESH_APP_FAILURES"):
        testapp.Faults.from_env({"SMIMESH_APP_FAILURES": "half"})
    with pytest.raises(ValueError, match=r"0\.\.1"):
        testapp.Faults(1.5)
    with pytest.raises(SystemExit, match=r"workers 1\.\.32"):
        testapp.Load.from_env({"SMIMESH_LOAD_URL": "http://x/", "SMIMESH_LOAD_WORKERS": "99"})
    assert testapp.Load.from_env({}) is None


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_bad_release_fails_its_share_with_the_delay_and_spares_the_control_port() -> None:
    tally = testapp.Tally("bad")
    faults = testapp.Faults(0.25, delay=0.02)
    mesh = testapp.serve("127.0.0.1", 0, "bad", tally=tally, faults=faults)
    control = testapp.serve("127.0.0.1", 0, "bad", tally=tally)
    with _serving(mesh) as mesh_url, _serving(control) as control_url, httpx.Client() as client:
        started = time.monotonic()
        codes = [client.get(f"{mesh_url}/echo").status_code for _ in range(40)]
        elapsed = time.monotonic() - started
        assert codes.count(500) == 10
        assert codes.count(200) == 30
        assert elapsed >= 40 * 0.02
        assert all(client.get(f"{control_url}/echo").status_code == 200 for _ in range(8))
        assert client.get(f"{control_url}/metrics").json()["paths"]["/echo"] == 48


def test_the_load_generator_calls_at_about_the_rate_asked_and_tallies() -> None:
    target = testapp.Tally("target")
    with _serving(testapp.serve("127.0.0.1", 0, "target", tally=target)) as url:
        loader = testapp.Tally("loader")
        started = time.monotonic()
        made: list[tuple[str, httpx.Client]] = []

        def new_client() -> httpx.Client:
            made.append((threading.current_thread().name, httpx.Client()))
            return made[-1][1]

        testapp.Load(f"{url}/echo", rps=50, workers=2).start(
            loader, {testapp.CALLER_HEADER: "loader"}, new_client
        )

        def answered() -> dict[str, int] | None:
            calls: dict[str, int] = loader.snapshot()["calls"].get(f"{url}/echo", {"ok": 0})
            return calls if calls["ok"] >= 50 else None

        calls = waiting.eventually_sync(answered, timeout=10,
                                        message=lambda: f"loaded: {loader.snapshot()}")  # fmt: skip
        elapsed = time.monotonic() - started
        # 50 requests at 50/s: about a second; never a burst of all of them at once.
        assert 0.8 <= elapsed <= 3.0, elapsed
        assert calls["failed"] == 0
        assert target.received["loader"] >= 50
        # One client per worker, made in that worker's thread: none shared between threads.
        assert sorted(name for name, _ in made) == ["load-0", "load-1"]


def test_a_call_without_a_status_is_kept_with_when_and_why() -> None:
    # A real listener that resets every connection it accepts (SO_LINGER 0: an RST, not a FIN).
    with socket.create_server(("127.0.0.1", 0)) as resetter:
        port = resetter.getsockname()[1]

        def reset_all() -> None:
            while True:
                try:
                    conn, _ = resetter.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

        threading.Thread(target=reset_all, daemon=True).start()
        target = testapp.Tally("target")
        with _serving(testapp.serve("127.0.0.1", 0, "caller", tally=target)) as url:
            order = {"url": f"http://127.0.0.1:{port}/x", "count": 3}
            answer = httpx.post(f"{url}/call", json=order, timeout=10).json()
            snapshot = httpx.get(f"{url}/metrics", timeout=10).json()
    assert answer["failed"] == 3, answer
    (code,) = answer["codes"]
    errors = snapshot["errors"]
    assert len(errors) == 3
    assert {e["url"] for e in errors} == {order["url"]}
    assert all(e["error"].startswith(f"{code}: ") for e in errors), errors
    assert all("ConnectionResetError" in e["cause"] or "reset" in e["error"].lower()
               for e in errors), errors  # fmt: skip
    assert all(e["at"].endswith("+00:00") for e in errors), errors


@pytest.mark.fast
def test_the_kept_errors_are_bounded_to_the_newest() -> None:
    tally = testapp.Tally("t")
    for n in range(testapp.MAX_ERRORS + 7):
        tally.error(f"http://x/{n}", httpx.ConnectError(f"refused {n}"))
    errors = tally.snapshot()["errors"]
    assert len(errors) == testapp.MAX_ERRORS
    assert errors[-1]["url"] == f"http://x/{testapp.MAX_ERRORS + 6}"
    assert errors[0]["url"] == "http://x/7"


def test_a_call_order_gives_each_concurrent_worker_its_own_client_and_closes_them() -> None:
    made: list[httpx.Client] = []

    def new_client() -> httpx.Client:
        made.append(httpx.Client())
        return made[-1]

    target = testapp.Tally("target")
    with _serving(testapp.serve("127.0.0.1", 0, "target", tally=target)) as target_url:
        caller = testapp.serve("127.0.0.1", 0, "caller", new_client=new_client)
        with _serving(caller) as url:
            order = {"url": f"{target_url}/echo", "count": 30, "concurrency": 3}
            answer = httpx.post(f"{url}/call", json=order, timeout=20).json()
    assert answer["ok"] == 30, answer
    assert len(made) == 3
    assert all(client.is_closed for client in made)
