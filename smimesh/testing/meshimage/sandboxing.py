"""Runs one RUN step of a stage: the command chrooted into the stage's rootfs, in its own
mount, pid, uts and ipc namespaces, and its own network namespace (only a loopback) unless the
step needs apt's network.

Called by `building`. Which steps get the network: only a RUN whose command calls `apt-get`
(the Dockerfile's package installs, pinned there and nowhere else); it shares the host's
network namespace and sees the host's resolver, read-only. Every other step — pip from the
wheels, useradd, compileall — runs with no route off its own loopback, so it can never touch
the host's network or iptables, and a step that would download something fails here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from smimesh.testing import gotools
from smimesh.testing.meshimage import failures

HOSTNAME = "meshimage"
OUTPUT_TAIL = 40
"""Lines of a failed step's output that the error shows."""
# Device nodes a build step may use (bound from the host onto a tmpfs /dev).
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


class StepError(failures.BuildError):
    """A RUN step exited non-zero; the message has its line, exit code and output's tail."""


@dataclass(frozen=True)
class Sandbox:
    """Where and as whom a step runs."""

    rootfs: Path
    workdir: str
    env: Mapping[str, str]
    uid: int = 0
    gid: int = 0
    network: bool = False
    """Share the host's network namespace (apt-get steps only; see the module docstring)."""


def needs_network(command: Sequence[str]) -> bool:
    """A step gets the network only to run apt-get."""
    return any("apt-get" in part for part in command)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise failures.BuildError(f"{name} is not installed (util-linux, iproute2 are needed)")
    return path


def _entry_script() -> str:
    """The shell the new namespaces start: /dev, loopback, resolver, then chroot and exec."""
    devices = " ".join(_DEVICES)
    return f"""set -eu
root=$1 wd=$2 uid=$3 gid=$4 net=$5 mount=$6 ip=$7 unshare=$8
shift 8
"$mount" -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
for d in {devices}; do : > "$root/dev/$d"; "$mount" --bind "/dev/$d" "$root/dev/$d"; done
mkdir -p "$root/dev/shm" "$root/dev/pts"
"$mount" -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
if [ "$net" = host ]; then
  [ -e "$root/etc/resolv.conf" ] || : > "$root/etc/resolv.conf"
  "$mount" --bind -o ro /etc/resolv.conf "$root/etc/resolv.conf"
else
  "$ip" link set lo up
fi
mkdir -p "$root$wd"
exec "$unshare" --root="$root" --wd="$wd" --setgid="$gid" --setuid="$uid" -- "$@"
"""


def run_step(
    sandbox: Sandbox,
    command: Sequence[str],
    *,
    what: str,
    say: Callable[[str], None],
) -> None:
    """Run `command` in the sandbox; raise `StepError` with the output's tail if it fails."""
    unshare = _tool("unshare")
    namespaces = [
        "--mount",
        "--propagation=private",
        "--pid",
        "--fork",
        "--kill-child",
        "--uts",
        "--ipc",
        f"--mount-proc={sandbox.rootfs / 'proc'}",
    ]
    if not sandbox.network:
        namespaces.append("--net")
    (sandbox.rootfs / "proc").mkdir(exist_ok=True)
    (sandbox.rootfs / "dev").mkdir(exist_ok=True)
    argv = [
        unshare,
        *namespaces,
        "--",
        "/bin/sh",
        "-c",
        _entry_script(),
        "meshimage-step",
        str(sandbox.rootfs),
        sandbox.workdir,
        str(sandbox.uid),
        str(sandbox.gid),
        "host" if sandbox.network else "none",
        _tool("mount"),
        _tool("ip"),
        unshare,
        *command,
    ]
    env = {"HOSTNAME": HOSTNAME, **sandbox.env}
    code, tail = gotools.run_reporting(
        argv, cwd=None, env=env, what=what, say=say, tail=OUTPUT_TAIL
    )
    if code != 0:
        raise StepError(f"{what} failed (exit {code}):\n{tail}")
