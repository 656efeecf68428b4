"""The installed entry points: `smimesh`, and `kubectl smi` through kubectl's plugin lookup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import smimesh
from smimesh._aio import waiting
from smimesh.testing import binaries

BIN = Path(sys.executable).parent


def test_kubectl_finds_the_plugin_on_path() -> None:
    kubectl = binaries.ensure_binaries().kubectl
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(kubectl), "smi", "version"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"smimesh client {smimesh.__version__}"


def test_help_lists_the_commands_and_teaches_by_example() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "demo", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Example: smimesh demo" in result.stdout


def test_an_unknown_command_exits_2_with_a_message() -> None:
    result = subprocess.run(
        [str(BIN / "kubectl-smi"), "frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.cluster
def test_demo_shows_the_traffic_share_follow_the_weights() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "demo", "--requests", "200"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [
        line.split() for line in result.stdout.splitlines() if line.strip().startswith("weights ")
    ]
    # "weights 90/10: v1 89% v2 11% (failed 0)" -> weights, observed shares, failures
    seen = {
        words[1].rstrip(":"): (int(words[3][:-1]), int(words[5][:-1]), words[7]) for words in lines
    }
    assert list(seen) == ["100/0", "90/10", "75/25", "50/50", "25/75", "0/100"]
    assert seen["100/0"] == (100, 0, "0)")
    assert seen["0/100"] == (0, 100, "0)")
    for weights, (v1, v2, failed) in seen.items():
        wanted = int(weights.split("/")[0])
        # 200 requests: +/-15 points is over 4 standard deviations of the binomial at p=0.5.
        assert abs(v1 - wanted) <= 15, (weights, v1)
        assert abs(v1 + v2 - 100) <= 1  # each share is rounded on its own
        assert failed == "0)"
    assert "nothing left running" in result.stdout


@pytest.mark.cluster
def test_the_readme_tour_moves_live_traffic_with_split_set_and_stat_shows_it() -> None:
    """The README's 5-minute tour, command for command: `smimesh demo --keep`, then in another
    shell the `export` it prints, `kubectl smi split set` and `kubectl smi stat`; SIGTERM stops
    everything. Tolerance: about 100 requests in the 10 s window, so v1's share is asserted
    at 0.80 +/- 0.15 (over 3.5 standard deviations of the binomial)."""
    demo = subprocess.Popen(
        [str(BIN / "smimesh"), "demo", "--keep", "--requests", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        printed: list[str] = []
        for line in demo.stdout:
            printed.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        else:
            pytest.fail("demo --keep ended early:\n" + "".join(printed))
        export = next(line.split() for line in printed if line.strip().startswith("export "))
        env = dict(os.environ)
        for assignment in export[1:]:
            name, value = assignment.split("=", 1)
            env[name] = value.replace("$PWD", str(BIN.parent.parent)).replace(
                "$PATH", os.environ["PATH"]
            )

        def tour(*argv: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                ["kubectl", "smi", *argv], env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done

        assert "podinfo-v2   100" in tour("split", "get", "-n", "demo").stdout
        tour("split", "set", "podinfo", "podinfo-v1=80", "podinfo-v2=20", "-n", "demo")
        # the window starts once every sidecar holds the new weights: Programmed for the
        # split's newest generation
        path = "{.metadata.generation} {.status.conditions[?(@.type=='Programmed')].status}"
        path += " {.status.conditions[?(@.type=='Programmed')].observedGeneration}"

        def programmed() -> bool:
            found = subprocess.run(
                ["kubectl", "-n", "demo", "get", "trafficsplits.split.smi-spec.io", "podinfo",
                 "-o", f"jsonpath={path}"],
                env=env, capture_output=True, text=True, timeout=60,
            ).stdout.split()  # fmt: skip
            return len(found) == 3 and found[1] == "True" and found[0] == found[2]

        waiting.eventually_sync(
            programmed, timeout=30, message="the new weights were not Programmed", interval=0.1
        )
        stat = json.loads(tour("stat", "-n", "demo", "--window", "10", "-o", "json").stdout)
        rates = {row["name"]: row["requests"] for row in stat["services"]}
        served = rates["podinfo-v1"] + rates["podinfo-v2"]
        assert served >= 50, stat
        assert abs(rates["podinfo-v1"] / served - 0.8) <= 0.15, rates

        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=120)
        assert demo.returncode == 0, rest
        assert "nothing left running" in rest
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
