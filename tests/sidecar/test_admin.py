"""The admin listener (/live, /ready, /config, /metrics, /identity), the metrics-only listener,
and explicit interception the way apps use it: curl with HTTP_PROXY set in its environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import smimesh
from smimesh.sidecar import probing, settings
from smimesh.testing import addresses
from tests.sidecar.conftest import NS, Pki, config, free_port, service, spiffe, until_ready


async def test_admin_endpoints(apps: Any, sidecars: Any) -> None:
    app = apps("one")
    cfg = config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),))
    empty = await sidecars()
    proxy = await sidecars(cfg, admin_config=True)
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


async def test_identity_reports_the_certificate_and_the_index_the_version(
    sidecars: Any, pki: Pki
) -> None:
    credentials = pki.credentials(NS, "web")
    proxy = await sidecars(config(), credentials=credentials)
    bare = await sidecars(config())
    async with httpx.AsyncClient() as client:
        identity = (await client.get(f"http://127.0.0.1:{proxy.ports['admin']}/identity")).json()
        missing = await client.get(f"http://127.0.0.1:{bare.ports['admin']}/identity")
        index = (await client.get(f"http://127.0.0.1:{proxy.ports['admin']}/")).json()
    certificate = credentials.certificate()
    assert certificate is not None
    assert identity == {
        "spiffe_id": spiffe(NS, "web"),
        "not_before": certificate.not_before.isoformat(),
        "not_after": certificate.not_after.isoformat(),
        "renew_at": None,  # mounted files are rotated by whoever writes them
        "source": "files",
    }
    assert certificate.not_before < certificate.not_after
    assert missing.status_code == 404
    assert index["version"] == smimesh.__version__
    assert "/identity" in index["endpoints"]


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


async def test_probe_port_runs_the_apps_original_probes(apps: Any, sidecars: Any) -> None:
    app = apps("one")
    closed = free_port()
    originals = {
        "app/readyz": {"httpGet": {"path": "/healthz", "port": app.port, "scheme": "HTTP"}},
        "app/livez": {"httpGet": {"path": "/healthz?status=500", "port": app.port}},
        "app/startupz": {"tcpSocket": {"port": closed}},
        "db/readyz": {"tcpSocket": {"port": app.port}},
    }
    proxy = await sidecars(config(), probe_port=0, app_probes=probing.parse(json.dumps(originals)))
    base = f"http://127.0.0.1:{proxy.ports['probes']}"
    async with httpx.AsyncClient() as client:
        statuses = {
            path: (await client.get(f"{base}{path}")).status_code
            for path in ("/app-health/app/readyz", "/app-health/app/livez",
                         "/app-health/app/startupz", "/app-health/db/readyz",
                         "/app-health/nope/readyz", "/ready", "/live")
        }  # fmt: skip
    assert statuses == {
        "/app-health/app/readyz": 200,
        "/app-health/app/livez": 503,
        "/app-health/app/startupz": 503,
        "/app-health/db/readyz": 200,
        "/app-health/nope/readyz": 404,
        "/ready": 200,
        "/live": 200,
    }
    assert any(hit[1] == "/healthz" for hit in app.hits)


async def test_config_answers_403_without_the_flag_and_the_config_with_it(
    apps: Any, sidecars: Any
) -> None:
    app = apps("one")
    cfg = config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),))
    closed = await sidecars(cfg)
    opened = await sidecars(cfg, admin_config=True)
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"http://127.0.0.1:{closed.ports['admin']}/config")
        index = (await client.get(f"http://127.0.0.1:{closed.ports['admin']}/")).json()
        served = await client.get(f"http://127.0.0.1:{opened.ports['admin']}/config")
    assert refused.status_code == 403
    assert "--admin-config" in refused.text
    assert str(app.port) not in refused.text  # no endpoint address leaks
    assert "/config" not in index["endpoints"]
    assert served.status_code == 200
    assert served.json()["version"] == cfg.version


async def test_metrics_listener_serves_metrics_and_probes_but_not_config(
    apps: Any, sidecars: Any
) -> None:
    app = apps("one")
    address = addresses.allocate_local()  # a pod-like address, not loopback
    cfg = config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),))
    proxy = await sidecars(cfg, admin_config=True, metrics_host=address, metrics_port=0)
    base = f"http://{address}:{proxy.ports['metrics']}"
    async with httpx.AsyncClient(trust_env=False) as client:
        statuses = {
            path: (await client.get(f"{base}{path}")).status_code
            for path in ("/metrics", "/ready", "/live", "/", "/config", "/identity")
        }
        metrics = await client.get(f"{base}/metrics")
        index = (await client.get(f"{base}/")).json()
    assert statuses == {
        "/metrics": 200, "/ready": 200, "/live": 200, "/": 200, "/config": 404, "/identity": 404,
    }  # fmt: skip
    assert "# TYPE osm_request_total counter" in metrics.text
    assert index["endpoints"] == ["/ready", "/live", "/metrics"]
    with pytest.raises(ConnectionRefusedError):  # the full admin listener stays on loopback
        await asyncio.open_connection(address, proxy.ports["admin"])


def test_admin_listener_binds_loopback_by_default(apps: Any, tmp_path: Path) -> None:
    assert settings.SidecarSettings().admin_host == "127.0.0.1"
    app = apps("app")
    path = tmp_path / "proxy.json"
    path.write_bytes(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "app")]),)).to_json()
    )
    outbound, admin = free_port(), free_port()
    log = tmp_path / "sidecar.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "smimesh.sidecar", "run", "--config", str(path),
             "--outbound-port", str(outbound), "--admin-port", str(admin)],
            stdout=sink, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        until_ready(process, admin, output=log.read_text)
        elsewhere = addresses.allocate_local()  # local to this host, as a pod IP would be
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{elsewhere}:{admin}/config", timeout=2, trust_env=False)
    finally:
        process.kill()
        process.communicate()
