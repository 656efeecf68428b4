"""`kubectl smi stat` and `top` against a running local mesh: live traffic while the command
samples, numbers read from the sidecars' own metrics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from smimesh.testing import clusters
from tests.cli.conftest import BIN, Meshed, Run, run_smi

pytestmark = pytest.mark.cluster


@pytest.fixture
def traffic(meshed: Meshed) -> Iterator[dict[str, int]]:
    """While the test runs, `a` calls `b` (answered) and `gone` (no endpoint: 503) in a loop;
    yields the running count of calls made."""
    made = {"b": 0, "gone": 0}
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            made["b"] += meshed.call("b", count=20)["ok"]
            made["gone"] += meshed.call("gone", count=2)["failed"]

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    yield made
    stop.set()
    worker.join(60)


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_stat_measures_each_service_and_edge_over_the_window(
    smi: Run, meshed: Meshed, traffic: dict[str, int]
) -> None:
    result = smi("stat", "-n", meshed.namespace, "--window", "2", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert 1.9 <= data["windowSeconds"] <= 4
    assert data["unreachable"] == []
    services = by_name(data["services"])
    assert set(services) == {"b", "gone"}

    b = services["b"]
    assert (b["pods"], b["meshedPods"]) == (1, 1)
    assert b["requests"] >= 20
    assert b["rps"] == pytest.approx(b["requests"] / data["windowSeconds"], rel=0.05)
    assert b["successRate"] == 1.0
    assert 0 < b["p50Ms"] <= b["p99Ms"] < 1000

    gone = services["gone"]  # no endpoint: only a's sidecar saw these, all 503
    assert (gone["pods"], gone["meshedPods"]) == (0, 0)
    assert gone["requests"] >= 2
    assert gone["successRate"] == 0.0

    edges = {
        (e["source"]["name"], e["destination"]["kind"], e["destination"]["name"]): e
        for e in data["edges"]
    }
    assert edges["a", "Deployment", "b"]["requests"] == b["requests"]
    assert edges["a", "Deployment", "b"]["source"]["namespace"] == meshed.namespace
    assert edges["a", "Service", "gone"]["successRate"] == 0.0
    assert traffic["b"] >= b["requests"]  # never more than the app made


def test_stat_prints_tables_by_default(smi: Run, meshed: Meshed, traffic: dict[str, int]) -> None:
    result = smi("stat", "-n", meshed.namespace, "--window", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Services \(over the last 1\.\ds\):", lines[0])  # measured, not set
    assert lines[1].split() == ["SERVICE", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P99"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.strip()}
    assert rows["b"][1:3] == ["1/1", "100.00%"]
    assert rows["gone"][1:3] == ["0/0", "0.00%"]
    edge = f"{meshed.namespace}/deployment/a {meshed.namespace}/deployment/b 100.00%"
    assert any(" ".join(line.split()).startswith(edge) for line in lines)


def test_top_redraws_until_its_iterations_are_done(
    smi: Run, meshed: Meshed, traffic: dict[str, int]
) -> None:
    result = smi("top", "-n", meshed.namespace, "--interval", "1", "--iterations", "1")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Services \(over the last 1\.\ds\):$", result.stdout, re.MULTILINE)
    assert re.search(r"^Edges \(over the last 1\.\ds\):$", result.stdout, re.MULTILINE)
    assert any(line.split()[:2] == ["b", "1/1"] for line in result.stdout.splitlines() if line)


def test_top_stops_cleanly_on_ctrl_c(cluster: clusters.Cluster, meshed: Meshed) -> None:
    top = subprocess.Popen(
        [str(BIN / "kubectl-smi"), "top", "-n", meshed.namespace, "--interval", "0.5",
         f"--kubeconfig={cluster.kubeconfig}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    top.send_signal(signal.SIGINT)
    out, err = top.communicate(timeout=30)
    assert top.returncode == 0, err
    assert "Traceback" not in err
    assert "SERVICE" in out


def test_a_namespace_without_meshed_pods_has_nothing_to_measure(smi: Run, meshed: Meshed) -> None:
    result = smi("stat", "-n", f"none-{uuid.uuid4().hex[:6]}", "--window", "0.2", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"] == []
    assert "no meshed pods" in result.stderr


def test_sidecars_that_do_not_answer_exit_1(smi: Run, meshed: Meshed) -> None:
    result = smi("stat", "-n", meshed.namespace, "--window", "0.2", "--metrics-port", "1")
    assert result.returncode == 1
    assert f"warning: {meshed.namespace}/a-1: http://{meshed.a.address}:1/metrics" in result.stderr
    assert "error: no sidecar answered on its metrics port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["stat", "top"])
def test_stat_and_top_teach_by_example(command: str) -> None:
    result = run_smi(command, "--help")
    assert result.returncode == 0
    assert f"Example: kubectl smi {command} " in result.stdout
