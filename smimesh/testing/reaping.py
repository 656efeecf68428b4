"""Local workloads die with the process that started them, however it dies (SIGKILL
included): a reaper process, started once per runner, holds the read end of a pipe from it.

The runner `hold`s each thing it makes that would outlive it — a process group, a cgroup, the
mounts under a folder, a network namespace, a veth, a route, a directory — and `release`s
what it cleans up itself. When the pipe reaches EOF (the runner exited or was killed) the
reaper kills the held process groups (SIGTERM, SIGKILL after a short grace) and every process
left in a held cgroup (the real node's containerd shims and containers, which no process
group of ours holds), removes those cgroups, unmounts what is mounted under a held folder
(the node's volumes, root file systems, Pod network namespaces), removes a CNI network's
cached results and a containerd's shim sockets, deletes the namespaces,
links and routes, removes the directories, and exits; a final alarm bounds it, so it never
outlives its job. Used by `workloads`, `isolating`, `kubelet`, `meshes`, `controlplane` and
`nodes`; run as `python -m smimesh.testing.reaping`.

A parent-death signal alone would not do: it fires when the *thread* that spawned a process
exits (the local node starts pods from pool threads), and it cleans no network state or
directory. Directories are kept only when the user asks (`SMIMESH_KEEP_LOGS=1`, or the CLI's
`--keep-logs`). What is still held when the runner exits normally is reaped as well.

Not held: the local range's route (`addresses.ensure_local_range`), a machine-wide setting
every runner shares; iptables rules, which live in a workload's namespace and go with it;
objects in the apiserver (a killed runner's Pods stay registered there).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

KEEP_LOGS_ENV = "SMIMESH_KEEP_LOGS"
GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL for the held process groups."""
KILL_WAIT = 5.0
DEADLINE = 60
"""The reaper exits at the latest this many seconds after its runner is gone."""

Kind = Literal["group", "cgroup", "mounts", "cni", "shims", "netns", "link", "route", "path"]
KINDS: tuple[Kind, ...] = (
    "group", "cgroup", "mounts", "cni", "shims", "netns", "link", "route", "path",
)  # fmt: skip
CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_RESULTS = Path("/var/lib/cni/results")
"""Where libcni caches each attachment's result (containerd 1.6 cannot move it)."""


@dataclass(frozen=True)
class Held:
    """One thing the reaper undoes if the runner dies; `value` is its kind's key: "PID
    STARTTIME GRACE" of a group, a cgroup's path below each hierarchy's root, a folder whose
    mounts go, a namespace or link name, "DST DEV" of a route, a path."""

    kind: Kind
    value: str


def keeps_logs() -> bool:
    """Whether the user asked to keep workloads' directories (logs, token, trust bundle)."""
    return os.environ.get(KEEP_LOGS_ENV, "").lower() in ("1", "true", "yes")


KEEP_LOGS_HELP = (
    "Keep each workload's directory (logs, token, trust bundle) and the mesh's; their paths "
    "are printed at the end. By default a clean stop removes them."
)


def keep_logs(keep: bool) -> None:
    """The CLI's `--keep-logs`: workloads started from now on keep their directories."""
    if keep:
        os.environ[KEEP_LOGS_ENV] = "1"


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """As a `preexec_fn`: the kernel SIGKILLs the child when the thread that started it
    exits. A first line for processes started from the main thread (the control plane, a
    build); not for workloads, which pool threads start, and which the reaper covers."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), "" if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def group(pid: int, *, grace: float = GRACE) -> Held:
    """The process group led by `pid` (started with `start_new_session=True`), given `grace`
    seconds between SIGTERM and SIGKILL (the operator needs a few to leave local mode)."""
    return Held("group", f"{pid} {_start_time(pid)} {grace:g}")


def cgroup(relative: str) -> Held:
    """The cgroup `relative` (e.g. `smimesh-node-1a2b`) in every hierarchy, with its subtree:
    its processes are killed and its folders removed."""
    return Held("cgroup", relative.strip("/"))


def cni(network: str) -> Held:
    """The cached CNI results of the network `network` (and of its sandboxes' loopback)."""
    return Held("cni", network)


def cni_results(network: str) -> list[Path]:
    """The result files libcni keeps for `network`'s attachments, with the loopback's of the
    same sandboxes (`<network>-<sandbox>-<ifname>`, `cni-loopback-<sandbox>-lo`)."""
    found = sorted(CNI_RESULTS.glob(f"{network}-*"))
    sandboxes = {p.name[len(network) + 1 :].rsplit("-", 1)[0] for p in found}
    found += [p for s in sorted(sandboxes) if (p := CNI_RESULTS / f"cni-loopback-{s}-lo").exists()]
    return found


SHIM_SOCKETS = Path("/run/containerd/s")
"""Where containerd 1.6 puts every shim's socket, whatever its configured state directory."""


def shims(address: Path, tasks: Path) -> Held:
    """The socket files of the shims a containerd at `address` started for the tasks whose
    bundles are in `tasks` (its `io.containerd.runtime.v2.task` state folder); a killed shim
    leaves its socket."""
    return Held("shims", f"{address} {tasks}")


def shim_sockets(address: Path, tasks: Path) -> list[Path]:
    """The sockets of the shims of `tasks`: containerd names each by the SHA-256 of
    `<address>/<namespace>/<id>`."""
    found = []
    for bundle in tasks.glob("*/*"):
        key = f"{address}/{bundle.parent.name}/{bundle.name}".encode()
        socket = SHIM_SOCKETS / hashlib.sha256(key).hexdigest()
        if socket.exists() or socket.is_symlink():
            found.append(socket)
    return found


def mounts(under: Path) -> Held:
    """Whatever is mounted at or below `under`, unmounted (lazily, deepest first)."""
    return Held("mounts", str(under))


def netns(name: str) -> Held:
    return Held("netns", name)


def link(name: str) -> Held:
    return Held("link", name)


def route(destination: str, device: str) -> Held:
    return Held("route", f"{destination} {device}")


def path(where: Path) -> Held:
    return Held("path", str(where))


class _Line:
    """The runner's end: the pipe to its reaper, started on first use (again after a fork
    or if the reaper died), and what is held, to hand to a restarted reaper."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._held: dict[Held, None] = {}
        self._inherited: list[subprocess.Popen[bytes]] = []

    @property
    def pid(self) -> int | None:
        with self._lock:
            process = self._process
            return process.pid if process is not None and self._owner == os.getpid() else None

    def _adopt(self) -> None:
        if self._owner != os.getpid():  # a forked child: the parent's reaper is not ours
            if self._process is not None:
                self._inherited.append(self._process)  # not ours to wait for, nor to drop
            self._process, self._held, self._owner = None, {}, os.getpid()

    def _start(self) -> IO[bytes]:
        process = self._process
        if process is not None and process.poll() is None and process.stdin is not None:
            return process.stdin
        process = self._process = subprocess.Popen(
            [sys.executable, "-m", "smimesh.testing.reaping", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C and group kills reach the runner, not its reaper
        )
        assert process.stdin is not None
        for item in self._held:
            process.stdin.write(_encode("+", item))
        process.stdin.flush()
        return process.stdin

    def send(self, op: Literal["+", "-"], item: Held) -> None:
        with self._lock:
            self._adopt()
            if op == "+":
                self._held[item] = None
            elif item in self._held:
                del self._held[item]
            else:
                return  # never held here (kept logs, say): nothing to tell
            for _ in range(2):
                pipe = self._start()
                try:
                    pipe.write(_encode(op, item))
                    pipe.flush()
                    return
                except BrokenPipeError:  # the reaper died: a new one gets everything held
                    if self._process is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            self._process.wait(5)
                    self._process = None

    def close(self, timeout: float = DEADLINE) -> None:
        """At exit: EOF to the reaper, which undoes what is still held, and wait for it."""
        with self._lock:
            process, self._process = self._process, None
            if process is None or self._owner != os.getpid():
                return
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _encode(op: str, item: Held) -> bytes:
    return (json.dumps([op, item.kind, item.value]) + "\n").encode()


_LINE = _Line()
atexit.register(_LINE.close)


def hold(item: Held) -> Held:
    """Have the reaper undo `item` if this process dies before `release(item)`."""
    _LINE.send("+", item)
    return item


def release(item: Held) -> None:
    """`item` is cleaned up (or handed over): the reaper forgets it."""
    _LINE.send("-", item)


_GROUPS: dict[int, Held] = {}


def hold_group(pid: int, *, grace: float = GRACE) -> None:
    """The process group `pid` leads (started with `start_new_session=True`), held until
    `release_group(pid)` — by pid, as the leader's start time is unreadable once reaped."""
    _GROUPS[pid] = hold(group(pid, grace=grace))


def release_group(pid: int) -> None:
    item = _GROUPS.pop(pid, None)
    if item is not None:
        release(item)


def reaper_pid() -> int | None:
    """This process's reaper, if one was started."""
    return _LINE.pid


def hold_directory(where: Path) -> None:
    """A workload directory: held, unless the user keeps logs."""
    if not keeps_logs():
        hold(path(where))


def remove_directory(where: Path) -> None:
    """Remove a workload directory on a clean stop, unless the user keeps logs."""
    if not keeps_logs():
        shutil.rmtree(where, ignore_errors=True)
        release(path(where))


# --- the reaper process -------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _ours(value: str) -> tuple[int, float] | None:
    """The pgid and grace of a held group, or None if its leader's pid now names another
    process (a pid in use as a pgid is never handed out: a gone leader means ours or none)."""
    pid, started, grace = [*value.split(" "), str(GRACE)][:3]
    now = _start_time(int(pid))
    return (int(pid), float(grace)) if not now or now == started else None


def _signal_groups(pgids: Iterable[int], signum: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def _ip(*argv: str) -> str:
    # Found on the system's paths too: the runner's PATH may have been anything.
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        return subprocess.run(
            [ip, *argv], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    return ""


def cgroup_dirs(relative: str) -> list[Path]:
    """The cgroup's folder in each hierarchy that has it (v1: one per controller; v2: one),
    with every folder below, deepest first."""
    found: list[Path] = []
    roots = [CGROUP_ROOT, *(p for p in CGROUP_ROOT.iterdir() if p.is_dir())]
    for root in roots:
        top = root / relative
        if (top / "cgroup.procs").is_file():
            found.extend(Path(d) for d, _, _ in os.walk(top))
    return sorted(found, key=lambda d: len(d.parts), reverse=True)


def cgroup_pids(relative: str) -> set[int]:
    pids: set[int] = set()
    for folder in cgroup_dirs(relative):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
    return pids


def empty_cgroup(relative: str, *, wait: float = KILL_WAIT) -> bool:
    """SIGKILL every process in the cgroup until none is left, then remove its folders;
    whether it is gone."""
    deadline = time.monotonic() + wait
    while (pids := cgroup_pids(relative)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for folder in cgroup_dirs(relative):
        with contextlib.suppress(OSError):
            folder.rmdir()
    return not cgroup_dirs(relative)


def mountpoints(under: Path) -> list[Path]:
    """Mount points at or below `under`, from /proc/self/mountinfo, deepest first."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            where = Path(line.split(" ")[4].replace("\\040", " "))
            if where == under or under in where.parents:
                found.append(where)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


_MNT_DETACH = 2


def unmount_all(under: Path) -> int:
    """Lazily unmount everything at or below `under`; how many were unmounted."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    done = 0
    for _ in range(3):  # a lazy unmount can uncover a mount stacked beneath
        points = mountpoints(under)
        if not points:
            break
        for point in points:
            done += libc.umount2(str(point).encode(), _MNT_DETACH) == 0
    return done


def reap(held: Iterable[Held]) -> list[str]:
    """Undo everything held, processes first; returns what was done, for the log line."""
    items = list(held)
    done = []
    graces = dict(g for item in items if item.kind == "group" and (g := _ours(item.value)))
    pgids = [p for p in graces if group_members(p)]
    if pgids:
        _signal_groups(pgids, signal.SIGTERM)
        started, left, killed = time.monotonic(), pgids, set()
        while left and (waited := time.monotonic() - started) < max(graces.values()) + KILL_WAIT:
            late = [p for p in left if graces[p] <= waited and p not in killed]
            _signal_groups(late, signal.SIGKILL)
            killed.update(late)
            time.sleep(0.05)
            left = [p for p in left if group_members(p)]
        done.append(f"{len(pgids)} process groups ({len(killed)} needed SIGKILL)")
    for item in items:
        if item.kind == "cgroup" and cgroup_dirs(item.value):
            empty_cgroup(item.value)
            done.append(f"cgroup {item.value}")
    for item in items:
        if item.kind == "mounts" and (count := unmount_all(Path(item.value))):
            done.append(f"{count} mounts under {item.value}")
        if item.kind == "shims":
            address, _, tasks = item.value.partition(" ")
            if sockets := shim_sockets(Path(address), Path(tasks)):
                for socket in sockets:
                    socket.unlink(missing_ok=True)
                done.append(f"{len(sockets)} shim sockets of {address}")
        if item.kind == "cni" and (results := cni_results(item.value)):
            for result in results:
                result.unlink(missing_ok=True)
            done.append(f"{len(results)} CNI results of {item.value}")
    for item in items:
        if item.kind == "netns":
            _ip("netns", "del", item.value)
        elif item.kind == "link" and Path("/sys/class/net", item.value).exists():
            _ip("link", "del", item.value)
        elif item.kind == "route" and _ip("route", "show", item.value.partition(" ")[0]):
            destination, _, device = item.value.partition(" ")
            _ip("route", "del", destination, "dev", device)
        else:
            continue
        done.append(f"{item.kind} {item.value}")
    for item in items:
        where = Path(item.value)
        if item.kind == "path" and (where.exists() or where.is_symlink()):
            if where.is_dir() and not where.is_symlink():
                shutil.rmtree(where, ignore_errors=True)
            else:
                where.unlink(missing_ok=True)
            done.append(item.value)
    return done


def _say(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"smimesh reaper: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str]) -> int:
    """Read holds from stdin until EOF, then reap what is held and exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner handles Ctrl-C and cleans up
    runner = argv[0] if argv else "?"
    held: dict[Held, None] = {}
    for raw in sys.stdin.buffer:
        try:
            op, kind, value = json.loads(raw)
        except ValueError:
            continue
        if kind not in KINDS:
            continue
        item = Held(kind, str(value))
        if op == "+":
            held[item] = None
        else:
            held.pop(item, None)
    signal.alarm(DEADLINE)  # whatever hangs below, the reaper does not outlive its job
    if held:
        done = reap(held)
        if done:
            _say(f"runner {runner} is gone; cleaned up after it: {'; '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
