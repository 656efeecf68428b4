"""The operator's flags (`smimesh.operator.flags`, the command of `smimesh.operator.__main__`):
each one, its environment variable, alias and default reach `running.OperatorSettings`, and
values out of range are usage errors. In-process, with `running.run` replaced: no cluster."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from typer.testing import CliRunner, Result

import smimesh
from smimesh.kube import clients, names
from smimesh.operator import __main__ as entry
from smimesh.operator import flags, running
from smimesh.webhooks.injection import settings

pytestmark = pytest.mark.fast

FLAGS = (
    "--kubeconfig",
    "--namespace",
    "--grpc-address",
    "--webhook-address",
    "--webhook-url",
    "--identity",
    "--lease-duration",
    "--access",
    "--workload-cert-lifetime",
    "--sidecar-metrics-port",
    "--sidecar-admin-port",
    "--ca-period",
    "--ca-auto-rotate-days",
    "--ca-drain-margin",
    "--proxy-image",
)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[running.OperatorSettings]:
    """The settings `running.run` would have been started with (it is not started)."""
    seen: list[running.OperatorSettings] = []

    async def run(settings: running.OperatorSettings) -> None:
        seen.append(settings)

    monkeypatch.setattr(entry.running, "run", run)
    for name in ("KUBECONFIG", "SMIMESH_NAMESPACE", "POD_NAME"):
        monkeypatch.delenv(name, raising=False)
    return seen


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(entry.app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_help_lists_every_flag_and_its_environment_variables() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for flag in FLAGS:
        assert flag in result.output
    assert "SMIMESH_NAMESPACE" in result.output
    assert "POD_NAME" in result.output


def test_every_flag_reaches_the_settings(
    started: list[running.OperatorSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "unchanged")
    result = invoke(
        "--kubeconfig=/tmp/k.yaml",
        "--namespace=mesh",
        "--grpc-address=0.0.0.0:15010",
        "--webhook-address=127.0.0.1:9000",
        "--webhook-url=https://127.0.0.1:9000",
        "--identity=op-1",
        "--lease-duration=10",
        "--access=strict",
        "--workload-cert-lifetime=60",
        "--sidecar-metrics-port=15091",
        "--ca-period=2",
        "--ca-auto-rotate-days=30",
        "--ca-drain-margin=7",
        "--proxy-image=registry.example/smimesh:dev",
    )
    assert result.exit_code == 0, result.output
    assert started == [
        running.OperatorSettings(
            namespace="mesh",
            identity="op-1",
            grpc_address="0.0.0.0:15010",
            webhook_address="127.0.0.1:9000",
            webhook_url="https://127.0.0.1:9000",
            lease_duration=10.0,
            lease_retry=2.0,
            default_access="strict",
            workload_cert_lifetime=datetime.timedelta(seconds=60),
            sidecar_metrics_port=15091,
            ca_period=2.0,
            ca_auto_rotate_before=datetime.timedelta(days=30),
            ca_drain_margin=datetime.timedelta(seconds=7),
            proxy_image="registry.example/smimesh:dev",
        )
    ]
    assert entry.os.environ["KUBECONFIG"] == "/tmp/k.yaml"


def test_without_flags_the_defaults_and_the_environment_decide(
    started: list[running.OperatorSettings],
) -> None:
    result = invoke(env={"SMIMESH_NAMESPACE": "mesh", "POD_NAME": "smimesh-operator-abc"})
    assert result.exit_code == 0, result.output
    assert started == [
        running.OperatorSettings(
            namespace="mesh",
            identity="smimesh-operator-abc",
            lease_duration=15.0,
            lease_retry=3.0,
            default_access="permissive",
            workload_cert_lifetime=datetime.timedelta(hours=24),
        )
    ]
    # The CA's defaults are the settings' own.
    assert started[0].ca_auto_rotate_before == running.OperatorSettings.ca_auto_rotate_before
    assert started[0].ca_drain_margin == running.OperatorSettings.ca_drain_margin
    # The injector's proxy and init containers run the operator's own image by default.
    assert started[0].proxy_image == f"{names.IMAGE_REPOSITORY}:{smimesh.__version__}"
    assert started[0].proxy_image == settings.InjectionSettings().proxy_image


def test_the_proxy_image_comes_from_its_environment_variable(
    started: list[running.OperatorSettings],
) -> None:
    result = invoke(env={"SMIMESH_PROXY_IMAGE": "registry.example/smimesh:env"})
    assert result.exit_code == 0, result.output
    assert started[0].proxy_image == "registry.example/smimesh:env"


def test_a_flag_wins_over_its_environment_variable(
    started: list[running.OperatorSettings],
) -> None:
    result = invoke("--namespace", "flag", "--identity", "me", env={"SMIMESH_NAMESPACE": "env"})
    assert result.exit_code == 0, result.output
    assert (started[0].namespace, started[0].identity) == ("flag", "me")


def test_the_old_name_of_the_sidecar_metrics_port_still_works(
    started: list[running.OperatorSettings],
) -> None:
    result = invoke("--sidecar-admin-port", "16000")
    assert result.exit_code == 0, result.output
    assert started[0].sidecar_metrics_port == 16000


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--workload-cert-lifetime", "9"), "--workload-cert-lifetime must be at least 10 seconds"),
        (("--ca-period", "0"), "--ca-period must be positive"),
        (("--ca-auto-rotate-days", "-1"), "the other --ca-* values not negative"),
        (("--ca-drain-margin", "-1"), "the other --ca-* values not negative"),
        (("--access", "open"), "Invalid value for '--access'"),
        (("--lease-duration", "soon"), "Invalid value for '--lease-duration'"),
    ],
)
def test_a_value_out_of_range_exits_2_with_the_reason_and_starts_nothing(
    started: list[running.OperatorSettings], args: tuple[str, ...], reason: str
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert reason in " ".join(result.output.split())
    assert started == []


def test_without_a_cluster_it_exits_1_saying_where_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run(settings: running.OperatorSettings) -> None:
        raise clients.NoClusterError("no kubeconfig and not in a cluster")

    monkeypatch.setattr(entry.running, "run", run)
    result = invoke()
    assert result.exit_code == 1
    assert "smimesh operator: no kubeconfig and not in a cluster" in result.output


def test_the_settings_can_be_built_without_a_command_line() -> None:
    build: Callable[..., running.OperatorSettings] = flags.settings
    assert build(identity="x") == running.OperatorSettings(
        identity="x", lease_retry=3.0, workload_cert_lifetime=datetime.timedelta(hours=24)
    )
