"""What a local workload runs: the app's environment and the sidecar's command line, for each
isolation — `address` (explicit interception: the sidecar is the app's HTTP proxy on the
workload's address) and `netns` (transparent interception inside the workload's network
namespace: the app has no proxy settings, iptables sends its connections to the sidecar).

Pure: called by `workloads` (which spawns the processes); no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from smimesh.kube import names
from smimesh.testing import isolating

Isolation = Literal["address", "netns"]

OUTBOUND_PORT = 15001
ADMIN_PORT = names.SIDECAR_ADMIN_PORT
METRICS_PORT = names.SIDECAR_METRICS_PORT
PROXY_VARIABLES = frozenset(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    for name in (base, base.lower())
)


@dataclass(frozen=True)
class Launch:
    """Who the workload is and where it runs."""

    namespace: str
    name: str
    service_account: str
    address: str
    isolation: Isolation
    config_server: str
    app_port: int
    workload_name: str


def app_environment(
    launch: Launch, inherited: Mapping[str, str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The app's environment: HOST/PORT to listen on and SMIMESH_WORKLOAD; in `address`
    isolation the sidecar as HTTP_PROXY, in `netns` no proxy variable at all (not even one
    inherited from the caller's environment): interception is transparent."""
    env = {key: value for key, value in inherited.items() if key not in PROXY_VARIABLES}
    env.update(extra)
    env.update(
        {"PORT": str(launch.app_port), "SMIMESH_WORKLOAD": f"{launch.namespace}/{launch.name}"}
    )
    if launch.isolation == "netns":
        env["HOST"] = "0.0.0.0"  # the namespace is the app's own; the sidecar reaches 127.0.0.1
        return env
    proxy = f"http://{launch.address}:{OUTBOUND_PORT}"
    env.update({"HOST": launch.address, "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": ""})
    return env


def sidecar_command(launch: Launch, *, token: str, trust_bundle: str) -> list[str]:
    """`python -m smimesh.sidecar run ...` (the caller supplies the interpreter)."""
    common = [
        "-m", "smimesh.sidecar", "run",
        "--config-server", launch.config_server,
        "--namespace", launch.namespace,
        "--service-account", launch.service_account,
        "--pod", launch.name,
        "--token-file", token,
        "--trust-bundle", trust_bundle,
        "--workload-kind", "Deployment",
        "--workload-name", launch.workload_name,
        # A local workload's address is local to this host alone: its admin port (with /config,
        # which tests and `kubectl smi proxy config` read) binds there, like a pod's metrics port.
        "--admin-config",
        "--metrics-port", str(METRICS_PORT),
    ]  # fmt: skip
    if launch.isolation == "netns":
        return [
            *common,
            "--interception", "transparent",
            "--mark", str(isolating.PROXY_MARK),
            "--outbound-host", "127.0.0.1",
            "--inbound-host", "0.0.0.0",
            "--admin-host", "0.0.0.0",
            "--metrics-host", "0.0.0.0",
            "--app-host", "127.0.0.1",
        ]  # fmt: skip
    return [
        *common,
        "--interception", "explicit",
        "--outbound-host", launch.address,
        "--inbound-host", launch.address,
        "--admin-host", launch.address,
        "--metrics-host", launch.address,
        "--app-host", launch.address,
    ]  # fmt: skip
