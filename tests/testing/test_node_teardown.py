"""The real node leaves nothing behind — no process, cgroup, mount, directory, network
namespace, veth, route or host nat chain — after a clean stop, and after its runner is
SIGKILLed (the reaper empties its cgroup and unmounts its folder). Each test starts a node of
its own on another link and Pod CIDR than the session's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smimesh._aio import waiting
from smimesh.testing import clusters, nodecleaning, nodenetwork, nodes, reaping
from tests.testing import nodepods

pytestmark = pytest.mark.node


def _network(index: int) -> nodenetwork.NodeNetwork:
    base = nodenetwork.LINK_CIDR.rsplit(".", 1)[0]
    return nodenetwork.NodeNetwork(
        f"smimesh-node-teardown{index}",
        host_address=f"{base}.{4 * index + 1}",
        node_address=f"{base}.{4 * index + 2}",
        pod_cidr=f"10.244.{10 + index}.0/24",
    )


def test_a_clean_stop_leaves_nothing(tmp_path: Path) -> None:
    network = _network(1)
    sockets = nodecleaning.shim_sockets_now()
    started = time.monotonic()
    with nodes.running(network=network) as made:
        ready = time.monotonic() - started
        plane = made.plane
        cluster = clusters.Cluster("node", plane.kubeconfig, str(plane.binaries.kubectl))
        nodepods.apply(cluster, "default", nodepods.pod("stopped", "sleep infinity"))
        nodepods.running(cluster, "default", "stopped")
        run_dir, cgroup, cni = made.node.run_dir, made.node.cgroup, made.node.cni_network
        assert reaping.cni_results(cni), "libcni cached the Pod's attachment"
        assert reaping.cgroup_pids(cgroup), "the node's cgroup holds its processes"
        assert reaping.mountpoints(run_dir), "the Pod's mounts are below the run directory"
    print(f"warm node start {ready:.1f}s, stop {made.node.timings['stop']:.1f}s")
    assert nodecleaning.leftovers(run_dir, cgroup, network, cni) == []
    assert nodecleaning.shim_sockets_now() <= sockets


def test_a_sigkilled_runner_leaves_nothing(tmp_path: Path) -> None:
    network = _network(2)
    report, log = tmp_path / "made.json", tmp_path / "runner.log"
    sockets = nodecleaning.shim_sockets_now()
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "tests.testing.noderunner", str(report), network.name,
             network.host_address, network.node_address, network.pod_cidr],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:

        def reported() -> bool:
            assert runner.poll() is None, f"the runner exited:\n{log.read_text()[-4000:]}"
            return report.is_file()

        waiting.eventually_sync(
            reported, timeout=240, message=lambda: log.read_text()[-4000:], interval=0.5
        )
        made = json.loads(report.read_text())
        run_dir, cgroup, cni = Path(made["run_dir"]), made["cgroup"], made["cni"]
        assert reaping.cgroup_pids(cgroup)
        runner.send_signal(signal.SIGKILL)
        assert runner.wait(10) == -signal.SIGKILL

        def left() -> list[str]:
            found = nodecleaning.leftovers(run_dir, cgroup, network, cni)
            return found + [f"shim socket {s}" for s in nodecleaning.shim_sockets_now() - sockets]

        waiting.eventually_sync(
            lambda: left() == [] or None,
            timeout=reaping.DEADLINE + 10,
            message=lambda: f"left behind: {left()}",
            interval=0.5,
        )
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
