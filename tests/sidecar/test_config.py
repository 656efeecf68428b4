"""Config: swaps keep in-flight requests on the snapshot they began with and lose nothing under
load; the config file is reloaded on change and a broken file keeps the last good config."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.sidecar.conftest import config, service


def _to(app: Any) -> Any:
    return config(outbound_services=(service("web", [("127.0.0.1", app.port, app.name)]),))


async def test_in_flight_request_keeps_its_snapshot_across_a_swap(apps: Any, sidecars: Any) -> None:
    old, new = apps("old"), apps("new")
    proxy = await sidecars(_to(old))
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        slow = asyncio.create_task(client.get("http://web/?sleep=0.8"))
        await asyncio.sleep(0.3)
        proxy.sidecar.apply(_to(new))
        after = await client.get("http://web/")
        before = await slow
    assert before.json()["app"] == "old"
    assert after.json()["app"] == "new"


async def test_swapping_under_load_loses_no_request(apps: Any, sidecars: Any) -> None:
    a, b = apps("a"), apps("b")
    configs = [_to(a), _to(b)]
    proxy = await sidecars(configs[0])
    stop = asyncio.Event()
    statuses: list[int] = []

    async def load(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            statuses.append((await client.get("http://web/")).status_code)

    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        workers = [asyncio.create_task(load(client)) for _ in range(6)]
        for i in range(30):
            await asyncio.sleep(0.02)
            proxy.sidecar.apply(configs[i % 2])
        stop.set()
        await asyncio.gather(*workers)
    assert len(statuses) > 100
    assert set(statuses) == {200}
    assert a.hits
    assert b.hits


async def test_config_file_is_reloaded_and_a_broken_one_is_ignored(
    apps: Any, sidecars: Any, tmp_path: Path
) -> None:
    first, second = apps("first"), apps("second")
    path = tmp_path / "proxy.json"
    path.write_bytes(_to(first).to_json())
    proxy = await sidecars(config_file=path, config_poll_seconds=0.05, admin_config=True)
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        await _until(lambda: proxy.sidecar.ctx.table is not None)
        assert (await client.get("http://web/")).json()["app"] == "first"
        path.write_bytes(_to(second).to_json())
        await _until(lambda: proxy.sidecar.ctx.table.version == _to(second).version)
        assert (await client.get("http://web/")).json()["app"] == "second"
        path.write_text('{"schema": "smimesh.dev/proxyconfig/v1", "broken": ')
        await _until(lambda: proxy.sidecar.file_source.last_error is not None)
        assert (await client.get("http://web/")).json()["app"] == "second"
    async with httpx.AsyncClient() as direct:
        admin = f"http://127.0.0.1:{proxy.ports['admin']}"
        current = (await direct.get(f"{admin}/config")).json()
    assert current["version"] == _to(second).version


async def test_sighup_reloads_even_when_polling_is_slow(
    apps: Any, sidecars: Any, tmp_path: Path
) -> None:
    from smimesh.sidecar import running

    first, second = apps("first"), apps("second")
    path = tmp_path / "proxy.json"
    path.write_bytes(_to(first).to_json())
    proxy = await sidecars(config_file=path, config_poll_seconds=3600)
    running.install_signals(proxy.sidecar)
    try:
        await _until(lambda: proxy.sidecar.ctx.table is not None)
        path.write_bytes(_to(second).to_json())
        signal.raise_signal(signal.SIGHUP)
        await _until(lambda: proxy.sidecar.ctx.table.version == _to(second).version)
    finally:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _until(check: Any, within: float = 5.0) -> None:
    """Poll `check` (state owned by another component, which offers no event to wait on)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
