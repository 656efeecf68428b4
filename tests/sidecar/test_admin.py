"""The admin listener (/live, /ready, /config, /metrics) and explicit interception the way
apps use it: curl with HTTP_PROXY set in its environment."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx

from tests.sidecar.conftest import config, service


async def test_admin_endpoints(apps: Any, sidecars: Any) -> None:
    app = apps("one")
    cfg = config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),))
    empty = await sidecars()
    proxy = await sidecars(cfg)
    async with httpx.AsyncClient() as client:
        admin = f"http://127.0.0.1:{empty.ports['admin']}"
        assert (await client.get(f"{admin}/live")).status_code == 200
        assert (await client.get(f"{admin}/ready")).status_code == 503  # no config yet
        admin = f"http://127.0.0.1:{proxy.ports['admin']}"
        assert (await client.get(f"{admin}/ready")).text.strip() == f"ready {cfg.version}"
        assert (await client.get(f"{admin}/config")).json()["version"] == cfg.version
        metrics = await client.get(f"{admin}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE osm_request_duration_ms histogram" in metrics.text


async def test_curl_with_http_proxy_environment(apps: Any, sidecars: Any) -> None:
    app = apps("one")
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),))
    )
    env = {**os.environ, "http_proxy": proxy.proxy_url, "HTTP_PROXY": proxy.proxy_url}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    process = await asyncio.create_subprocess_exec(
        "curl", "-s", "-m", "5", "http://web.shop.svc.cluster.local/from-curl",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    answer = json.loads(out)
    assert answer["app"] == "one"
    assert answer["path"] == "/from-curl"  # absolute-form target rewritten to origin-form
    assert answer["headers"]["host"] == "web.shop.svc.cluster.local"
    assert "proxy-connection" not in answer["headers"]
