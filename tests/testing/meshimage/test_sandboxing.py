"""A RUN step in its sandbox, on the real Debian base: its own pid, mount and network
namespaces (only a loopback unless it calls apt-get), the stage's user, workdir and
environment and nothing of the host's, and a failure that says what the step printed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smimesh._aio import waiting
from smimesh.testing import gotools
from smimesh.testing.meshimage import bases, sandboxing

pytestmark = pytest.mark.image
PATH = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


@pytest.fixture(scope="module")
def base() -> Path:
    spec = bases.spec_for("debian:bookworm-20250520-slim")
    return bases.ensure_base(spec, cache=gotools.cache_root() / "image", say=gotools.say)


@pytest.fixture
def rootfs(base: Path, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "--numeric-owner", "-xpf", str(base), "-C", str(root)], check=True)
    yield root
    shutil.rmtree(root)  # ~130 MiB: not for pytest's kept temporary folders


def interfaces(proc_net_dev: str) -> set[str]:
    return {line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:]}


def run(rootfs: Path, script: str, **options: object) -> None:
    sandbox = sandboxing.Sandbox(rootfs, **{"workdir": "/", "env": PATH, **options})  # type: ignore[arg-type]
    sandboxing.run_step(sandbox, ["/bin/sh", "-c", script], what="a test step", say=gotools.say)


def test_a_step_has_only_its_own_loopback_and_is_pid_1(rootfs: Path) -> None:
    run(rootfs, "cat /proc/net/dev > /netdev; echo $$ > /pid")
    assert interfaces((rootfs / "netdev").read_text()) == {"lo"}
    assert (rootfs / "pid").read_text().strip() == "1"
    assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()


def test_only_an_apt_get_step_shares_the_hosts_network(rootfs: Path) -> None:
    command = ["/bin/sh", "-c", "apt-get --version > /dev/null; cat /proc/net/dev > /netdev"]
    assert sandboxing.needs_network(command)
    assert not sandboxing.needs_network(["/bin/sh", "-c", "pip install ."])
    sandbox = sandboxing.Sandbox(rootfs, "/", PATH, network=sandboxing.needs_network(command))
    sandboxing.run_step(sandbox, command, what="apt", say=gotools.say)
    assert interfaces((rootfs / "netdev").read_text()) == interfaces(
        Path("/proc/net/dev").read_text()
    )
    assert (rootfs / "etc" / "resolv.conf").read_text() == ""  # bound read-only, not copied


def test_a_step_runs_as_the_stage_user_in_its_workdir_with_only_the_stage_env(
    rootfs: Path,
) -> None:
    run(rootfs, "{ id -u; id -g; pwd; env; } > /tmp/seen", workdir="/work/dir",
        env={**PATH, "GREETING": "hi"}, uid=65532, gid=65533)  # fmt: skip
    uid, gid, cwd, *env = (rootfs / "tmp" / "seen").read_text().splitlines()
    assert (uid, gid, cwd) == ("65532", "65533", "/work/dir")
    assert "GREETING=hi" in env
    assert not any(line.startswith(("PYTHONPATH=", "HOME=", "PIP_")) for line in env)


def test_a_failing_step_says_its_exit_code_and_what_it_printed(rootfs: Path) -> None:
    with pytest.raises(sandboxing.StepError, match=r"a test step failed \(exit 3\):\nboom"):
        run(rootfs, "echo boom; exit 3")


def _step_processes(work: Path) -> list[int]:
    """Processes whose root is a stage rootfs under `work` (a RUN step's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str((entry / "root").readlink()).startswith(str(work)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_during_a_run_step_ends_it_and_keeps_nothing(tmp_path: Path, base: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-20250520-slim\nRUN sleep 300\n")
    cache = tmp_path / "cache"  # its own, with the real base linked in
    (cache / "image" / "bases").mkdir(parents=True)
    (cache / "image" / "bases" / base.name).symlink_to(base)
    work = cache / "image" / "work"
    with subprocess.Popen(
        [sys.executable, "-m", "smimesh.testing.meshimage", "--no-wheels",
         "--file", str(tmp_path / "Dockerfile"), "--context", str(tmp_path)],
        env={**os.environ, "SMIMESH_CACHE": str(cache)},
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as builder:  # fmt: skip
        try:
            steps = waiting.eventually_sync(
                lambda: _step_processes(work) or None, timeout=120, message="the RUN step runs"
            )
            os.killpg(builder.pid, signal.SIGINT)  # as Ctrl-C in a terminal
            _, err = builder.communicate(timeout=30)
        finally:
            if builder.poll() is None:
                os.killpg(builder.pid, signal.SIGKILL)
    assert builder.returncode == 130, err
    assert "interrupted; nothing half-built is kept" in err
    # The step's pid namespace goes with the killed unshare (its init gets SIGKILL).
    waiting.eventually_sync(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in steps),
        timeout=10,
        message=f"the RUN step's processes {steps} are gone",
    )
    assert list(work.iterdir()) == []
