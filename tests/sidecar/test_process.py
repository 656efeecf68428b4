"""The sidecar as its users run it: `smimesh sidecar run` in a subprocess, drained by SIGTERM
(in-flight requests finish, new connections are refused, /ready turns 503), and
`python -m smimesh.sidecar init --dry-run`."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sidecar.conftest import config, free_port, service

SMIMESH = str(Path(sys.executable).with_name("smimesh"))


LOW_SOFT_LIMIT = 256


def _low_open_files() -> None:
    """Start the sidecar as a shell with `ulimit -n 256` would (the hard limit unchanged)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))


@pytest.fixture
def sidecar_process(apps: Any, tmp_path: Path) -> Any:
    app = apps("app")
    path = tmp_path / "proxy.json"
    path.write_bytes(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "app")]),)).to_json()
    )
    outbound, admin = free_port(), free_port()
    process = subprocess.Popen(
        [SMIMESH, "sidecar", "run", "--config", str(path), "--outbound-port", str(outbound),
         "--admin-port", str(admin), "--admin-host", "127.0.0.1", "--drain-seconds", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_low_open_files,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(f"sidecar never became ready: {process.communicate()}")
    yield process, outbound, admin
    if process.poll() is None:
        process.kill()
    process.communicate()


async def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(
    sidecar_process: Any,
) -> None:
    process, outbound, admin = sidecar_process
    async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{outbound}", timeout=10) as client:
        slow = asyncio.create_task(client.get("http://web/?sleep=1.5"))
        await asyncio.sleep(0.4)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient() as direct:
            ready = await direct.get(f"http://127.0.0.1:{admin}/ready")
        assert ready.status_code == 503
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", outbound)
        response = await slow
    assert response.status_code == 200
    assert response.json()["app"] == "app"
    assert await asyncio.to_thread(process.wait, 15) == 0


def test_the_sidecar_lifts_its_open_files_limit_to_the_hard_limit(sidecar_process: Any) -> None:
    """Started with a soft limit of 256, it runs with the hard limit (at most 2**20), so the
    per-listener connection caps are what refuse connections, not EMFILE."""
    process, _, _ = sidecar_process
    limits = Path(f"/proc/{process.pid}/limits").read_text().splitlines()
    soft, hard = next(line for line in limits if line.startswith("Max open files")).split()[3:5]
    expected = min(resource.RLIM_INFINITY if hard == "unlimited" else int(hard), 1 << 20)
    if expected <= LOW_SOFT_LIMIT:
        pytest.fail(f"this machine's hard limit ({hard}) leaves nothing to lift")
    assert int(soft) == expected


def test_init_dry_run_prints_the_redirect_rules() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smimesh.sidecar", "init", "--dry-run", "--proxy-uid", "1337",
         "--exclude-inbound-ports", "15000,15020", "--exclude-outbound-cidrs", "10.0.0.1/32"],
        capture_output=True, text=True, check=True, env={**os.environ},
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert "iptables -t nat -A SMIMESH_OUTBOUND -p tcp -j REDIRECT --to-ports 15001" in lines
    assert "iptables -t nat -A SMIMESH_INBOUND -p tcp -j REDIRECT --to-ports 15003" in lines
    assert "iptables -t nat -A SMIMESH_INBOUND -p tcp --dport 15020 -j RETURN" in lines
    assert "iptables -t nat -A SMIMESH_OUTBOUND -m owner --uid-owner 1337 -j RETURN" in lines
    assert "iptables -t nat -A SMIMESH_OUTBOUND -d 10.0.0.1/32 -j RETURN" in lines
