"""Faults done to a local workload, for the fault suite: SIGKILL its sidecar and start it
again with the very command line it had, and swap its token file the way the kubelet
rotates a projected token (a new file moved into place, never a partial write).

Works on `workloads.LocalWorkload` (its processes, its directory); the restarted sidecar is
spawned through the workload, so it lives and dies under the same rules as the first one.
Used by `tests/e2e/test_faults.py`; token contents come from `minting`.
"""

from __future__ import annotations

import contextlib
import os
import signal

from smimesh.testing import workloads


class FaultError(RuntimeError):
    """A fault could not be done as asked (the process was not in the expected state)."""


def kill_sidecar(workload: workloads.LocalWorkload) -> None:
    """SIGKILL the sidecar's process group and reap it: no drain, no goodbye."""
    process = workload.processes["sidecar"]
    if process.poll() is not None:
        raise FaultError(f"{workload.spec.name}: the sidecar had already exited")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_sidecar(workload: workloads.LocalWorkload, *, timeout: float = 20.0) -> None:
    """SIGTERM: the sidecar drains and exits (a rolling restart's first half)."""
    process = workload.processes["sidecar"]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout)


def restart_sidecar(workload: workloads.LocalWorkload, *, ready_timeout: float = 30.0) -> None:
    """Start the exited sidecar again, same arguments and environment, and wait until it is
    ready; the previous run's log stays next to the new one (`sidecar.<n>.log`)."""
    process = workload.processes["sidecar"]
    if process.poll() is None:
        raise FaultError(f"{workload.spec.name}: the sidecar is still running")
    argv = process.args
    if not isinstance(argv, list):
        raise FaultError(f"{workload.spec.name}: unexpected sidecar command {argv!r}")
    runs = len(list(workload.log_dir.glob("sidecar.*.log")))
    log = workload.log_dir / "sidecar.log"
    if log.exists():
        log.rename(workload.log_dir / f"sidecar.{runs}.log")
    workload._spawn("sidecar", [os.fsdecode(arg) for arg in argv], dict(os.environ))
    workload.wait_ready(ready_timeout)


def replace_token(workload: workloads.LocalWorkload, token: str) -> None:
    """Put a new token in the sidecar's token file atomically (write, then rename over)."""
    path = workload.log_dir / "token"
    fresh = path.with_name(".token.new")
    fresh.write_text(token)
    fresh.chmod(0o600)
    fresh.replace(path)
