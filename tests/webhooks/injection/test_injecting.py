"""Injecting one pod: native or classic sidecar, interception, identity volume, idempotency."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from smimesh.webhooks.injection import errors, injecting, settings

from .pods import annotated, app_pod, apply_patch

pytestmark = pytest.mark.fast

ENABLED_NS = {"smimesh.dev/inject": "enabled"}
NATIVE = settings.InjectionSettings()
CLASSIC = settings.InjectionSettings(native_sidecars=False)
CNI = settings.InjectionSettings(cni_mode=True)


def _inject(pod: dict[str, Any], config: settings.InjectionSettings = NATIVE) -> dict[str, Any]:
    result = injecting.inject_pod(pod, namespace="shop", namespace_labels=ENABLED_NS, config=config)
    assert result.injected, result.decision
    return result.pod


def _names(containers: list[dict[str, Any]]) -> list[str]:
    return [container["name"] for container in containers]


def test_native_mode_adds_interception_then_a_restartable_proxy_before_the_pods_init() -> None:
    pod = app_pod(initContainers=[{"name": "migrate", "image": "registry.example/migrate:1"}])
    spec = _inject(pod)["spec"]
    assert _names(spec["initContainers"]) == ["smimesh-init", "smimesh-proxy", "migrate"]
    proxy = spec["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert proxy["startupProbe"]["httpGet"] == {"path": "/ready", "port": 15020, "scheme": "HTTP"}
    assert "lifecycle" not in proxy
    assert _names(spec["containers"]) == ["app"]


def test_classic_mode_puts_the_proxy_first_and_waits_for_it_after_start() -> None:
    pod = app_pod(initContainers=[{"name": "migrate", "image": "registry.example/migrate:1"}])
    spec = _inject(pod, CLASSIC)["spec"]
    assert _names(spec["containers"]) == ["smimesh-proxy", "app"]
    proxy = spec["containers"][0]
    assert proxy["lifecycle"]["postStart"]["exec"]["command"] == [
        "smimesh",
        "sidecar",
        "wait-ready",
    ]
    assert "restartPolicy" not in proxy
    assert _names(spec["initContainers"]) == ["migrate", "smimesh-init"], (
        "the pod's own init containers run before interception, as no proxy exists yet"
    )


def test_cni_mode_adds_no_privileged_init_container() -> None:
    spec = _inject(app_pod(), CNI)["spec"]
    assert _names(spec["initContainers"]) == ["smimesh-proxy"]
    classic = _inject(app_pod(), settings.InjectionSettings(cni_mode=True, native_sidecars=False))
    assert "initContainers" not in classic["spec"]


def test_the_init_container_redirects_with_the_proxy_ports_and_user() -> None:
    init = _inject(app_pod())["spec"]["initContainers"][0]
    assert init["command"] == ["smimesh", "sidecar", "init"]
    assert init["args"] == [
        "--proxy-uid",
        "1337",
        "--inbound-port",
        "15003",
        "--outbound-port",
        "15001",
        "--exclude-inbound-ports",
        "15000,15020,15090",
    ]
    assert init["securityContext"]["capabilities"] == {
        "add": ["NET_ADMIN", "NET_RAW"],
        "drop": ["ALL"],
    }


def test_exclusion_annotations_reach_the_init_container() -> None:
    pod = annotated(
        app_pod(),
        **{
            "smimesh.dev/exclude-outbound-ports": "5432, 6379",
            "smimesh.dev/exclude-inbound-ports": "9090",
            "smimesh.dev/exclude-outbound-ip-ranges": "10.0.0.0/8,192.168.1.5",
        },
    )
    args = _inject(pod)["spec"]["initContainers"][0]["args"]
    assert args[args.index("--exclude-inbound-ports") + 1] == "9090,15000,15020,15090"
    assert args[args.index("--exclude-outbound-ports") + 1] == "5432,6379"
    assert args[args.index("--exclude-outbound-cidrs") + 1] == "10.0.0.0/8,192.168.1.5/32"


@pytest.mark.parametrize(
    ("annotation", "value", "says"),
    [
        ("smimesh.dev/exclude-outbound-ports", "5432,http", "'http' is not a port"),
        ("smimesh.dev/exclude-inbound-ports", "70000", "'70000' is not a port"),
        ("smimesh.dev/exclude-outbound-ip-ranges", "10.0.0.0/33", "is not an IP range"),
    ],
)
def test_a_bad_exclusion_is_refused_with_its_annotation(
    annotation: str, value: str, says: str
) -> None:
    with pytest.raises(errors.InjectionError, match=says) as caught:
        _inject(annotated(app_pod(), **{annotation: value}))
    assert annotation in str(caught.value)


def test_the_proxy_gets_a_short_lived_smimesh_token_and_its_settings() -> None:
    spec = _inject(app_pod())["spec"]
    (volume,) = spec["volumes"]
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"audience": "smimesh", "expirationSeconds": 3600, "path": "token"}
    proxy = spec["initContainers"][1]
    assert proxy["volumeMounts"] == [
        {
            "name": "smimesh-identity",
            "mountPath": "/var/run/secrets/smimesh.dev/identity",
            "readOnly": True,
        }
    ]
    assert proxy["image"] == NATIVE.proxy_image
    assert proxy["resources"] == {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert proxy["securityContext"]["runAsUser"] == 1337
    assert proxy["command"] == ["smimesh", "sidecar", "run"]
    assert proxy["args"] == [
        "--token-file",
        "/var/run/secrets/smimesh.dev/identity/token",
        "--trust-bundle",
        "/var/run/secrets/smimesh.dev/identity/ca.crt",
    ]
    env = {item["name"]: item for item in proxy["env"]}
    assert env["SMIMESH_INTERCEPTION"]["value"] == "transparent"
    assert env["SMIMESH_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "spec.serviceAccountName"
    )
    assert env["SMIMESH_APP_PROBES"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['smimesh.dev/original-probes']"
    )


def test_existing_volumes_are_kept() -> None:
    pod = app_pod(volumes=[{"name": "data", "emptyDir": {}}])
    assert _names(_inject(pod)["spec"]["volumes"]) == ["data", "smimesh-identity"]


def test_custom_settings_are_used() -> None:
    config = settings.InjectionSettings(
        proxy_image="registry.local/proxy:dev",
        token_audience="mesh.example",
        ports=settings.Ports(admin=16000, outbound=16001, inbound=16003, probes=16020),
    )
    spec = _inject(app_pod(), config)["spec"]
    assert spec["initContainers"][1]["image"] == "registry.local/proxy:dev"
    sources = spec["volumes"][0]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["audience"] == "mesh.example"
    assert spec["containers"][0]["livenessProbe"]["httpGet"]["port"] == 16020


def test_injection_is_idempotent_and_marked() -> None:
    once = _inject(app_pod())
    assert once["metadata"]["annotations"]["smimesh.dev/injected"] == NATIVE.proxy_image
    again = injecting.inject_pod(once, namespace="shop", namespace_labels=ENABLED_NS, config=NATIVE)
    assert (again.injected, again.decision.reason) == (False, "already-injected")
    assert again.pod == once
    assert again.patch == []


def test_the_input_pod_is_never_changed() -> None:
    pod = app_pod()
    kept = copy.deepcopy(pod)
    _inject(pod)
    assert pod == kept


@pytest.mark.parametrize("config", [NATIVE, CLASSIC, CNI], ids=["native", "classic", "cni"])
@pytest.mark.parametrize(
    "pod",
    [
        app_pod(),
        annotated(app_pod(volumes=[{"name": "d", "emptyDir": {}}]), team="a"),
        app_pod(initContainers=[{"name": "i", "image": "busybox"}]),
    ],
    ids=["bare", "annotated-with-volumes", "with-init"],
)
def test_the_patch_turns_the_original_into_the_injected_pod(
    pod: dict[str, Any], config: settings.InjectionSettings
) -> None:
    result = injecting.inject_pod(pod, namespace="shop", namespace_labels=ENABLED_NS, config=config)
    assert result.patch
    assert apply_patch(pod, result.patch) == result.pod


def test_a_skipped_pod_comes_back_unchanged_with_an_empty_patch() -> None:
    result = injecting.inject_pod(app_pod(), namespace="shop", namespace_labels={})
    assert (result.injected, result.pod, result.patch) == (False, app_pod(), [])


@pytest.mark.parametrize("port", [15000, 15001, 15003, 15020, 15090])
def test_an_app_port_the_proxy_needs_is_refused(port: int) -> None:
    pod = app_pod()
    pod["spec"]["containers"][0]["ports"].append({"containerPort": port})
    with pytest.raises(errors.InjectionError, match=f"uses port {port}, which the smimesh proxy"):
        _inject(pod)


def test_a_hand_made_proxy_container_is_refused() -> None:
    pod = app_pod()
    pod["spec"]["containers"].append({"name": "smimesh-proxy", "image": "x"})
    with pytest.raises(errors.InjectionError, match="already has a container named"):
        _inject(pod)


def test_the_original_probes_annotation_is_compact_sorted_json() -> None:
    annotation = _inject(app_pod())["metadata"]["annotations"]["smimesh.dev/original-probes"]
    assert json.loads(annotation) == {
        "app/livez": {"httpGet": {"path": "/healthz", "port": 8080}},
        "app/readyz": {"tcpSocket": {"port": 8080}},
    }
    assert " " not in annotation


def test_probe_rewriting_can_be_turned_off() -> None:
    pod = _inject(app_pod(), settings.InjectionSettings(rewrite_probes=False))
    assert pod["spec"]["containers"] == app_pod()["spec"]["containers"]
    assert "smimesh.dev/original-probes" not in pod["metadata"]["annotations"]
    env = [item["name"] for item in pod["spec"]["initContainers"][1]["env"]]
    assert "SMIMESH_APP_PROBES" not in env


def test_prometheus_scrapes_the_metrics_port_and_kubelet_probes_the_probe_port() -> None:
    pod = _inject(app_pod())
    proxy = pod["spec"]["initContainers"][1]
    assert [(p["name"], p["containerPort"]) for p in proxy["ports"]] == [
        ("smimesh-metrics", 15090),
        ("smimesh-probes", 15020),
    ]  # the admin port binds 127.0.0.1 in the proxy: nothing to declare
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert proxy[kind]["httpGet"]["port"] == 15020
    env = {item["name"]: item.get("value") for item in proxy["env"]}
    assert env["SMIMESH_METRICS_PORT"] == "15090"
    assert "SMIMESH_ADMIN_CONFIG" not in env  # /config stays off
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "15090"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_a_pods_own_prometheus_annotations_are_kept() -> None:
    pod = annotated(app_pod(), **{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"})
    annotations = _inject(pod)["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8080"
    assert "prometheus.io/path" not in annotations


def test_config_is_served_only_when_the_pod_asks_for_it() -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/admin-config": "enabled"})
    proxy = _inject(pod)["spec"]["initContainers"][1]
    assert {"name": "SMIMESH_ADMIN_CONFIG", "value": "true"} in proxy["env"]
