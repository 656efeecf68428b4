"""The smimesh image built here from the Dockerfile (`make image`), unpacked with umoci and
run under real runc, each container in a network namespace of its own: the operator serves
its webhooks against a control plane, the sidecar serves its admin port, the conformance test
app answers HTTP, and `sidecar init` writes its rules in the container's namespace only.

The first run builds the image (minutes: mmdebstrap, apt, pip); later runs hit the cache.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import smimesh
from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.testing import clusters, controlplane, gotools, meshes
from smimesh.testing.meshimage import building, containers, packing, project
from tests.sidecar.conftest import config

ROOT = Path(__file__).resolve().parents[3]
UID = (65532, 65532)
HOST_NAT_DUMPS = ("iptables-legacy-save", "iptables-nft-save")

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def image() -> packing.Packed:
    return project.project_image(ROOT)


@pytest.fixture(scope="module")
def bundle(
    image: packing.Packed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[containers.Bundle]:
    unpacked = containers.unpack(image.reference, tmp_path_factory.mktemp("bundle") / "image")
    yield unpacked
    shutil.rmtree(unpacked.directory)  # ~450 MiB: not for pytest's kept temporary folders


@pytest.fixture
def netns() -> Iterator[str]:
    with containers.network_namespace() as name:
        yield name


def curl(container: containers.Container, url: str) -> str | None:
    """The body at `url` fetched inside the container's namespace, None while it fails."""
    if container.exited() is not None:
        pytest.fail(f"the container exited ({container.exited()}):\n{container.logs()[-3000:]}")
    result = container.inside(["curl", "-sSfk", "--max-time", "2", url])
    return result.stdout if result.returncode == 0 else None


def test_the_image_config_is_the_dockerfiles(image: packing.Packed) -> None:
    found = packing.image_config(image.layout, image.tag)["config"]
    assert isinstance(found, dict)
    assert found["User"] == "65532:65532"
    assert found["WorkingDir"] == "/tmp"
    assert found["Cmd"] == ["python", "-m", "smimesh.operator"]
    assert set(found["ExposedPorts"]) == {"9443/tcp", "15010/tcp"}
    assert found["Labels"]["org.opencontainers.image.title"] == "smimesh"
    assert (
        "PATH=/opt/smimesh/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        in (found["Env"])
    )
    assert image.tag == smimesh.__version__
    assert 20 * 2**20 < image.compressed_bytes < image.unpacked_bytes


def test_a_rebuild_with_unchanged_inputs_is_the_cached_layout(image: packing.Packed) -> None:
    started = time.monotonic()
    again = building.build(
        building.Request(ROOT / "Dockerfile", ROOT, smimesh.__version__),
        cache=gotools.cache_root() / "image",
        say=gotools.say,
    )
    elapsed = time.monotonic() - started
    gotools.say(f"warm rebuild: {elapsed:.2f}s")
    assert again == image
    assert elapsed < 5.0  # it only hashes the inputs (about half a second here)


def test_the_conformance_app_answers_http(
    bundle: containers.Bundle, netns: str, tmp_path: Path
) -> None:
    with containers.run(
        bundle, ["smimesh", "conformance", "app"], netns=netns, work=tmp_path, user=UID,
        env={"PORT": "8080", "SMIMESH_WORKLOAD": "image/app"},
    ) as app:  # fmt: skip
        body = waiting.eventually_sync(
            lambda: curl(app, "http://127.0.0.1:8080/echo"), timeout=30,
            message="the test app in the image never answered",
        )  # fmt: skip
    assert "image/app" in body


def test_the_sidecar_serves_its_admin_port_with_a_config(
    bundle: containers.Bundle, netns: str, tmp_path: Path
) -> None:
    proxy_json = tmp_path / "proxy.json"
    proxy_json.write_bytes(config().to_json())
    proxy_json.chmod(0o644)
    with containers.run(
        bundle, ["smimesh", "sidecar", "run", "--config", "/etc/smimesh/proxy.json"],
        netns=netns, work=tmp_path, user=(1337, 1337),
        mounts={proxy_json: "/etc/smimesh/proxy.json"},
    ) as sidecar:  # fmt: skip
        ready = waiting.eventually_sync(
            lambda: curl(sidecar, "http://127.0.0.1:15000/ready"), timeout=30,
            message="the sidecar in the image never became ready",
        )  # fmt: skip
        metrics = curl(sidecar, "http://127.0.0.1:15000/metrics")
        identity = sidecar.inside(["curl", "-sS", "http://127.0.0.1:15000/identity"])
    assert ready is not None
    assert metrics is not None
    assert "# TYPE" in metrics
    assert "no certificate" in identity.stdout  # plaintext: the config file gave no certificate


def test_the_sidecar_without_a_config_source_exits_2_saying_so(
    bundle: containers.Bundle, netns: str, tmp_path: Path
) -> None:
    with containers.run(
        bundle, ["smimesh", "sidecar", "run"], netns=netns, work=tmp_path, user=UID
    ) as sidecar:
        assert containers.finished(sidecar, timeout=30) == 2
    assert "no config source" in sidecar.logs()
    assert "Traceback" not in sidecar.logs()


def _host_nat() -> dict[str, str]:
    dumps = {}
    for tool in HOST_NAT_DUMPS:
        if shutil.which(tool):
            result = subprocess.run([tool, "-t", "nat"], capture_output=True, text=True)
            dumps[tool] = "\n".join(
                line for line in result.stdout.splitlines() if not line.startswith("#")
            )
    return dumps


def test_sidecar_init_writes_its_rules_in_the_containers_own_namespace(
    bundle: containers.Bundle, netns: str, tmp_path: Path
) -> None:
    before = _host_nat()
    with containers.run(
        bundle, ["smimesh", "sidecar", "init", "--proxy-uid", "1337"], netns=netns,
        work=tmp_path, user=(0, 0), capabilities=("CAP_NET_ADMIN", "CAP_NET_RAW"),
    ) as init:  # fmt: skip
        code = containers.finished(init, timeout=60)
    assert code == 0, init.logs()
    with containers.run(
        bundle, ["iptables-save", "-t", "nat"], netns=netns, work=tmp_path, user=(0, 0),
        capabilities=("CAP_NET_ADMIN", "CAP_NET_RAW"),
    ) as dump:  # fmt: skip
        assert containers.finished(dump, timeout=30) == 0, dump.logs()
    rules = dump.logs()
    assert "REDIRECT" in rules
    assert "--to-ports 15001" in rules
    assert "--uid-owner 1337" in rules
    assert _host_nat() == before


@pytest.fixture(scope="module")
def plane() -> Iterator[controlplane.ControlPlane]:
    """A control plane of this module's own: the operator in the image registers its
    webhooks on it by a URL only its container reaches, which a shared one must not get."""
    with controlplane.running(say=gotools.say) as running:
        yield running


def _portable_kubeconfig(cluster: clusters.Cluster, path: Path) -> Path:
    """The operator's ServiceAccount kubeconfig with the CA inlined (no host paths)."""
    cluster.kubeconfig_for(names.MESH_NAMESPACE, names.OPERATOR_SERVICE, path)
    loaded = yaml.safe_load(path.read_text())
    for entry in loaded["clusters"]:
        ca = Path(entry["cluster"].pop("certificate-authority"))
        entry["cluster"]["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(yaml.safe_dump(loaded))
    path.chmod(0o644)
    return path


def test_the_operator_starts_and_answers_its_webhook_health_endpoint(
    bundle: containers.Bundle, netns: str, tmp_path: Path, plane: controlplane.ControlPlane
) -> None:
    cluster = clusters.Cluster("local", plane.kubeconfig, str(plane.binaries.kubectl))
    meshes.install(cluster)
    kubeconfig = _portable_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
    host, _, port = plane.server.removeprefix("https://").rpartition(":")
    with (
        containers.bridge(netns, int(port), f"{host}:{port}"),
        containers.run(
            bundle,
            ["python", "-m", "smimesh.operator", "--kubeconfig", "/etc/smimesh/kubeconfig",
             "--webhook-address", "127.0.0.1:9443", "--webhook-url", "https://127.0.0.1:9443",
             "--grpc-address", "127.0.0.1:15010", "--identity", "image-test"],
            netns=netns, work=tmp_path, mounts={kubeconfig: "/etc/smimesh/kubeconfig"},
        ) as operator,
    ):  # fmt: skip
        health = waiting.eventually_sync(
            lambda: curl(operator, "https://127.0.0.1:9443/healthz"), timeout=90,
            message="the operator in the image never answered /healthz",
        )  # fmt: skip
        config_server = operator.inside(
            [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 15010))"]
        )
    assert health is not None
    assert config_server.returncode == 0, config_server.stderr
