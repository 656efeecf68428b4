"""Starting and stopping the local control plane: clean stops and clear failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from smimesh.testing import binaries, controlplane


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state from /proc.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


@pytest.fixture(scope="module")
def found() -> binaries.Binaries:
    return binaries.ensure_binaries()


def test_stop_leaves_no_process_and_no_state(found: binaries.Binaries) -> None:
    plane = controlplane.ControlPlane(found)
    plane.start()
    state = plane.state_dir
    pids = [process.popen.pid for process in plane._processes]
    assert len(pids) == 2
    assert all(_alive(pid) for pid in pids)
    listed = plane.kubectl("get", "--raw", "/readyz")
    assert listed.stdout == "ok"

    plane.stop()

    assert not any(_alive(pid) for pid in pids)
    assert not state.exists()


def test_an_etcd_that_dies_is_reported_with_its_exit_code(
    found: binaries.Binaries, tmp_path: Path
) -> None:
    broken = tmp_path / "etcd"
    broken.write_text("#!/bin/sh\necho 'etcd: cannot start: disk on fire' >&2\nexit 3\n")
    broken.chmod(0o755)
    plane = controlplane.ControlPlane(
        binaries.Binaries(etcd=broken, kube_apiserver=found.kube_apiserver, kubectl=found.kubectl)
    )
    with pytest.raises(controlplane.ControlPlaneError, match="etcd exited with code 3") as caught:
        plane.start()
    assert "disk on fire" in str(caught.value)
    assert plane.workdir is None


def test_an_apiserver_that_is_not_ready_in_time_is_reported(found: binaries.Binaries) -> None:
    plane = controlplane.ControlPlane(found, ready_timeout=0.0)
    with pytest.raises(controlplane.ControlPlaneError, match="was not ready within 0s"):
        plane.start()
    assert not plane._processes


@pytest.mark.fast
def test_a_machine_without_go_gets_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(binaries.BinariesError, match="Go is not on PATH"):
        binaries.ensure_binaries(say=lambda message: None)


@pytest.mark.fast
def test_a_missing_wrapper_module_names_the_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is part of this machine kind; the build needs it")
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path))
    monkeypatch.setenv("SMIMESH_KUBE_MODULE", str(tmp_path / "nowhere"))
    with pytest.raises(binaries.BinariesError, match="SMIMESH_KUBE_MODULE"):
        binaries.ensure_binaries(say=lambda message: None)


@pytest.mark.fast
def test_cached_binaries_are_reused_without_go(
    found: binaries.Binaries, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    again = binaries.ensure_binaries(say=lambda message: pytest.fail(f"rebuilt: {message}"))
    assert again == found
