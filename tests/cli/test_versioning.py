"""`kubectl smi version`: client always; the apiserver's, the operator's and the proxies'
versions when a cluster is configured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import smimesh
from smimesh.testing import controlplane
from tests.cli.conftest import Meshed, Run, run_smi


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig for an apiserver that does not exist (a free port on loopback)."""
    port = controlplane.free_port()
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        f"clusters: [{{name: gone, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: gone, user: {token: x}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: gone}}]\n"
    )
    return path


@pytest.mark.cluster
def test_version_prints_client_and_server(smi: Run) -> None:
    result = smi("version")
    assert result.returncode == 0, result.stderr
    client_line, server_line, operator_line, proxies_line = result.stdout.splitlines()
    assert client_line == f"smimesh client {smimesh.__version__}"
    assert server_line.startswith("Kubernetes server v")
    assert operator_line.startswith("smimesh operator")
    assert proxies_line.startswith("smimesh proxies")


@pytest.mark.cluster
def test_version_names_the_installed_operator_and_the_running_proxies(
    smi: Run, meshed: Meshed
) -> None:
    result = smi("version")
    assert result.returncode == 0, result.stderr
    operator_line, proxies_line = result.stdout.splitlines()[2:]
    assert operator_line == (
        f"smimesh operator {smimesh.__version__} (image ghcr.io/smimesh/smimesh:"
        f"{smimesh.__version__}, 0/1 replicas ready, leader operator-a)"  # runs outside: local
    )
    # Our two pods answer; pods other tests left in the cluster may add more.
    pattern = rf"smimesh proxies {re.escape(smimesh.__version__)} \((\d+) pods\)(; .*)?"
    found = re.fullmatch(pattern, proxies_line)
    assert found is not None, proxies_line
    assert int(found[1]) >= 2


def test_client_only_never_contacts_a_cluster(tmp_path: Path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    result = run_smi("version", "--client", f"--kubeconfig={kubeconfig}")
    assert result.returncode == 0
    assert result.stdout == f"smimesh client {smimesh.__version__}\n"


def test_an_unreachable_cluster_exits_2_after_the_client_version(tmp_path: Path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    result = run_smi("version", f"--kubeconfig={kubeconfig}")
    assert result.returncode == 2
    assert result.stdout.startswith("smimesh client ")
    assert "cannot reach the Kubernetes API at https://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["status"],
        ["split", "get"],
        ["split", "set", "web", "a=1"],
        ["install"],
        ["uninstall"],
    ],
)
def test_every_cluster_command_exits_2_when_the_cluster_is_unreachable(
    tmp_path: Path, command: list[str]
) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    result = run_smi(*command, f"--kubeconfig={kubeconfig}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_missing_kubeconfig_file_exits_2(tmp_path: Path) -> None:
    result = run_smi("status", f"--kubeconfig={tmp_path / 'nope'}")
    assert result.returncode == 2
    assert "no such file" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["install"],
        ["uninstall"],
        ["check"],
        ["split", "get"],
        ["split", "set"],
        ["status"],
        ["version"],
    ],
)
def test_every_command_teaches_by_example(command: list[str]) -> None:
    result = run_smi(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"Example: kubectl smi {command[0]}" in result.stdout
