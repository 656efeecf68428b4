"""Local workloads die with the process that started them: a runner SIGKILLed leaves no
process, address, route, network namespace, veth or directory behind, and a clean stop
leaves no directory (real operator, sidecars, namespaces and apiserver; `reaping`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smimesh._aio import waiting
from smimesh.testing import clusters, isolating, meshes, workloads
from tests.testing import support

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REAPED_WITHIN = 30.0
"""Seconds after the runner's death by which everything must be gone (the reaper's grace
before SIGKILL is 3 s; the rest is slack for a loaded machine)."""


def _stat(pid: int) -> list[str]:
    """State, ppid, pgrp, ... of a process (fields 3 on of /proc/PID/stat); [] if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            yield int(entry.name), fields


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, fields in _processes():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _members(pgids: Collection[int]) -> list[int]:
    return [pid for pid, f in _processes() if f[0] != "Z" and int(f[2]) in pgids]


def _ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=False).stdout


def _leftovers(made: dict[str, Any], pids: Collection[int]) -> list[str]:
    """What of the runner's workloads still exists on this host."""
    found = [f"process {pid}" for pid in sorted(pids) if _alive(pid)]
    found += [f"process {pid} of a workload's group" for pid in _members(made["groups"])]
    netns = made.get("netns")
    if netns and netns in [line.split(" ")[0] for line in _ip("netns", "list").splitlines()]:
        found.append(f"network namespace {netns}")
    if made.get("veth") and re.search(rf"\d+: {made['veth']}[@:]", _ip("link", "show")):
        found.append(f"veth {made['veth']}")
    for table in (("route", "show"), ("route", "show", "table", "local")):
        for line in _ip(*table).splitlines():
            if set(line.split()) & {a for ad in made["addresses"] for a in (ad, f"{ad}/32")}:
                found.append(f"`ip {' '.join(table)}`: {line}")
    found += [f"directory {d}" for d in made["directories"] if Path(d).exists()]
    return found


def _assert_reaped(made: dict[str, Any], pids: Collection[int]) -> None:
    """Until nothing of `made` is left; AssertionError listing what is after REAPED_WITHIN."""
    left: list[str] = []

    def reaped() -> bool:
        nonlocal left
        left = _leftovers(made, pids)
        return not left

    waiting.eventually_sync(
        reaped,
        timeout=REAPED_WITHIN,
        message=lambda: f"left after {REAPED_WITHIN:.0f}s: {left}",
        interval=0.2,
        error=AssertionError,
    )


def _sweep(made: dict[str, Any], pids: Collection[int]) -> None:
    """After a failed test, what the reaper should have done, so no other test trips on it."""
    for pid in [*pids, *_members(made["groups"])]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    if made.get("netns"):
        space = isolating.Namespace(made["addresses"][-1], "", name=made["netns"])
        space.remove()
    for directory in made["directories"]:
        shutil.rmtree(directory, ignore_errors=True)


def _logs(pids: Collection[int]) -> set[Path]:
    """The log files these processes write to (a workload's directory holds them)."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if (target := fd.readlink()).suffix == ".log":
                        found.add(target)
    return found


def _serves(address: str) -> int:
    return httpx.get(f"http://{address}:{workloads.ADMIN_PORT}/ready", timeout=5).status_code


def test_a_sigkilled_runner_leaves_no_process_address_route_namespace_or_directory(
    cluster: clusters.Cluster, tmp_path: Path
) -> None:
    support.require_netns()
    report, log = tmp_path / "made.json", tmp_path / "runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "tests.testing.runner", str(cluster.kubeconfig),
             cluster.kubectl_binary, str(report)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    made: dict[str, Any] = {"groups": [], "addresses": [], "directories": []}
    pids: set[int] = set()
    try:

        def reported() -> bool:
            assert runner.poll() is None, f"the runner exited:\n{log.read_text()[-4000:]}"
            return report.exists()

        waiting.eventually_sync(
            reported,
            timeout=120,
            message=lambda: f"no workloads in 120s:\n{log.read_text()[-4000:]}",
            interval=0.2,
            error=AssertionError,
        )
        made = json.loads(report.read_text())
        pids = _descendants(runner.pid)
        assert [_serves(address) for address in made["addresses"]] == [200, 200]
        assert len(made["groups"]) >= 5  # operator; app + sidecar; app + sidecar + bridge

        runner.kill()
        assert runner.wait(10) == -signal.SIGKILL

        _assert_reaped(made, pids)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        _sweep(made, pids)


def test_a_sigkilled_workload_run_leaves_no_process_namespace_route_or_directory(
    cluster: clusters.Cluster,
) -> None:
    support.require_netns()
    with meshes.LocalMesh(cluster) as mesh:
        assert mesh.operator is not None
        namespace = mesh.namespace(f"wl-{uuid.uuid4().hex[:6]}")
        mesh.service(namespace, "vm", {"app": "vm"})
        joined = subprocess.Popen(
            [str(BIN / "smimesh"), "workload", "run", "--netns", "-n", namespace,
             "--service-account", "legacy", "-l", "app=vm", "--name", "vm-1",
             "--config-server", mesh.operator.grpc_address,
             "--kubeconfig", str(cluster.kubeconfig),
             "--", sys.executable, "-m", "smimesh.conformance.testapp"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        made: dict[str, Any] = {"groups": [], "addresses": [], "directories": []}
        pids: set[int] = set()
        try:
            assert joined.stderr is not None
            announced = joined.stderr.readline()
            found = re.search(r"vm-1 at (10\.78\.\S+) in network namespace (\S+) ", announced)
            assert found is not None, announced
            address, netns = found.groups()
            pids = _descendants(joined.pid)
            groups = sorted({int(_stat(pid)[2]) for pid in pids} - {os.getpgid(joined.pid)})
            directories = [str(isolating.NETNS_ETC / netns)]
            directories += [str(log.parent) for log in _logs(pids) if "smimesh-wl-" in str(log)]
            made = {
                "groups": groups,
                "addresses": [address],
                "netns": netns,
                "veth": netns.replace("-", ""),
                "directories": sorted(set(directories)),
            }
            assert len(made["directories"]) == 2, made
            assert _serves(address) == 200

            joined.kill()
            assert joined.wait(10) == -signal.SIGKILL

            _assert_reaped(made, pids)
        finally:
            if joined.poll() is None:
                joined.kill()
            joined.wait()
            if joined.stderr is not None:
                joined.stderr.close()
            _sweep(made, pids)


def test_a_clean_stop_leaves_no_directory_and_no_process(cluster: clusters.Cluster) -> None:
    support.require_netns()
    with meshes.LocalMesh(cluster) as mesh:
        assert mesh.operator is not None
        namespace = mesh.namespace(f"stop-{uuid.uuid4().hex[:6]}")
        near = mesh.workload(namespace, "a-1", "a", {"app": "a"})
        far = mesh.workload(namespace, "b-1", "b", {"app": "b"}, isolation="netns")
        assert far.netns is not None
        made: dict[str, Any] = {
            "groups": [mesh.operator.process.pid]
            + [p.pid for w in (near, far) for p in w.processes.values()],
            "addresses": [near.address, far.address],
            "netns": far.netns.name,
            "veth": far.netns.host_veth,
            "directories": [str(mesh.work_dir), str(near.log_dir), str(far.log_dir)],
        }
        assert all(Path(d, "sidecar.log").exists() for d in made["directories"][1:])
    try:
        assert _leftovers(made, ()) == []
    finally:
        _sweep(made, ())


HOLDER = """
import json, os, subprocess, sys, tempfile, time
from pathlib import Path
from smimesh.testing import addresses, isolating, reaping
directory = Path(tempfile.mkdtemp(prefix="smimesh-wl-"))
reaping.hold_directory(directory)
stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300 & wait"], start_new_session=True)
reaping.hold_group(stubborn.pid)
space = isolating.Namespace(addresses.allocate_routed(), addresses.gateway())
space.create()
made = {"groups": [stubborn.pid], "addresses": [space.address], "netns": space.name,
        "veth": space.host_veth, "directories": [str(directory), str(space.etc)],
        "reaper": reaping.reaper_pid()}
print(json.dumps(made), flush=True)
if sys.argv[1] == "exit":
    os.killpg(stubborn.pid, 9)
    stubborn.wait()
    reaping.release_group(stubborn.pid)
    space.remove()
    reaping.remove_directory(directory)
    sys.exit(0)
time.sleep(300)
"""


@pytest.mark.parametrize("ending", ["sigkill", "exit"])
def test_the_reaper_undoes_what_its_runner_held_and_exits(ending: str) -> None:
    """Held: a process group that ignores SIGTERM (and a child of it), a namespace with its
    veth and route, directories. Killed, the runner leaves none; a runner that exits after
    cleaning up takes its reaper with it."""
    support.require_netns()
    runner = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ending], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    made: dict[str, Any] = {"groups": [], "addresses": [], "directories": []}
    try:
        assert runner.stdout is not None
        made = json.loads(runner.stdout.readline())
        if ending == "sigkill":
            assert _members(made["groups"]), "the held group runs"
            runner.kill()
        started = time.monotonic()
        runner.wait(10)
        _assert_reaped(made, [made["reaper"]])
        took = time.monotonic() - started
        # SIGTERM is ignored: SIGKILL after the 3 s grace; 10 s is slack for a loaded host.
        assert took < 10.0 if ending == "sigkill" else took < 5.0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
        _sweep(made, [made["reaper"]] if "reaper" in made else [])


PLANE = """
import json, time
from smimesh.testing import binaries, controlplane
plane = controlplane.ControlPlane(binaries.ensure_binaries())
plane.start()
made = {"groups": [p.popen.pid for p in plane._processes], "addresses": [],
        "directories": [str(plane.state_dir)]}
print(json.dumps(made), flush=True)
time.sleep(300)
"""


def test_a_sigkilled_runner_leaves_no_control_plane_and_no_state_directory() -> None:
    """etcd and kube-apiserver die with their runner (a parent-death signal, and the
    reaper), and their state directory (keys, etcd's data) goes too."""
    with subprocess.Popen(
        [sys.executable, "-c", PLANE], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as runner:
        made: dict[str, Any] = {"groups": [], "addresses": [], "directories": []}
        pids: set[int] = set()
        try:
            assert runner.stdout is not None
            made = json.loads(runner.stdout.readline())
            pids = _descendants(runner.pid)
            assert len(made["groups"]) == 2
            assert _members(made["groups"])

            runner.kill()
            runner.wait(10)

            _assert_reaped(made, pids)
        finally:
            if runner.poll() is None:
                runner.kill()
            _sweep(made, pids)


@pytest.mark.parametrize("keep", [False, True])
def test_a_stopped_workload_keeps_its_directory_only_when_asked(
    api: Any, namespace: str, keep: bool, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    if keep:
        monkeypatch.setenv("SMIMESH_KEEP_LOGS", "1")  # reaping.KEEP_LOGS_ENV
    spec = workloads.WorkloadSpec(namespace, "kept-1", "kept", command=["true"])
    workload = workloads.LocalWorkload(spec, api=api, config_server="", trust_bundle=b"")
    (workload.log_dir / "sidecar.log").write_text("a line\n")
    try:
        workload.stop()
        assert workload.log_dir.exists() is keep
        assert (f"logs kept in {workload.log_dir}" in capsys.readouterr().err) is keep
    finally:
        shutil.rmtree(workload.log_dir, ignore_errors=True)
