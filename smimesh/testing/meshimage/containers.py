"""Runs the built image under real runc: `unpack` turns an OCI layout into a read-only rootfs
plus the runtime config umoci derives from the image config; `run` starts one container from
it in a named network namespace of its own (only a loopback, nothing shared with the host).

Used by tests/testing/meshimage/ (the operator, the sidecar, the init container and the test
app, each in the image). `Container.inside` runs a host tool (curl, the bridge) in the
container's network namespace; nothing here touches the host's own network. Every container,
its namespace and its bridge are held by `reaping` until they are removed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smimesh._aio import waiting
from smimesh.testing import reaping
from smimesh.testing.meshimage import failures

STOP_SECONDS = 15.0


@dataclass(frozen=True)
class Bundle:
    """An unpacked image: its rootfs (shared read-only by every container) and the runtime
    config umoci made from the image config (Env, User, Cwd, Args)."""

    directory: Path

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.directory / "config.json").read_text())
        return loaded


def unpack(reference: str, directory: Path) -> Bundle:
    """`umoci unpack` the layout `path:tag` into `directory` (replaced)."""
    shutil.rmtree(directory, ignore_errors=True)
    result = subprocess.run(
        ["umoci", "unpack", "--image", reference, str(directory)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise failures.BuildError(f"umoci unpack {reference} failed: {result.stderr}")
    return Bundle(directory)


@dataclass
class Container:
    """A running container: runc's id, its state directory and its netns name."""

    id: str
    netns: str
    directory: Path
    process: subprocess.Popen[bytes]

    def logs(self) -> str:
        return (self.directory / "output.log").read_text(errors="replace")

    def exited(self) -> int | None:
        return self.process.poll()

    def inside(
        self, argv: Sequence[str], *, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """A host command run in the container's network namespace (and nothing else of it)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip


def _config(
    bundle: Bundle,
    args: Sequence[str],
    *,
    netns: str,
    user: tuple[int, int] | None,
    env: Mapping[str, str],
    capabilities: Sequence[str],
    mounts: Mapping[Path, str],
) -> dict[str, Any]:
    config = copy.deepcopy(bundle.config())
    config["root"] = {"path": str(bundle.rootfs), "readonly": True}
    process = config["process"]
    process["args"] = list(args)
    process["terminal"] = False
    if user is not None:
        process["user"] = {"uid": user[0], "gid": user[1]}
    process["env"] = [*process.get("env", []), *(f"{k}={v}" for k, v in env.items())]
    caps = process.setdefault("capabilities", {})
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = sorted({*caps.get(kind, []), *capabilities})
    linux = config["linux"]
    linux["namespaces"] = [
        ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user", "cgroup")
    ] + [{"type": "network", "path": f"/run/netns/{netns}"}]
    linux.pop("uidMappings", None)
    linux.pop("gidMappings", None)
    writable = [
        {"destination": where, "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]}
        for where in ("/tmp", "/run")
    ]  # fmt: skip
    binds = [
        {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro"]}
        for src, dest in mounts.items()
    ]
    config["mounts"] = [*config.get("mounts", []), *writable, *binds]
    return config


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh named netns with its loopback up; deleted afterwards."""
    name = f"mi-{uuid.uuid4().hex[:8]}"
    held = reaping.hold(reaping.netns(name))
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
        reaping.release(held)


@contextlib.contextmanager
def run(
    bundle: Bundle,
    args: Sequence[str],
    *,
    netns: str,
    work: Path,
    user: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
    capabilities: Sequence[str] = (),
    mounts: Mapping[Path, str] | None = None,
) -> Iterator[Container]:
    """Start the container (`runc run`, in the foreground of its own process group); stop it
    with SIGTERM, then SIGKILL, and delete it on the way out."""
    container_id = f"meshimage-{uuid.uuid4().hex[:10]}"
    directory = work / container_id
    directory.mkdir(parents=True)
    config = _config(bundle, args, netns=netns, user=user, env=env or {},
                     capabilities=capabilities, mounts=mounts or {})  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    with (directory / "output.log").open("wb") as out:
        process = subprocess.Popen(
            ["runc", "run", "--bundle", str(directory), container_id],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    reaping.hold_group(process.pid, grace=STOP_SECONDS)
    container = Container(container_id, netns, directory, process)
    try:
        yield container
    finally:
        _stop(container)
        reaping.release_group(process.pid)


def _stop(container: Container) -> None:
    if container.process.poll() is None:
        subprocess.run(["runc", "kill", container.id, "TERM"], capture_output=True, check=False)
        try:
            container.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            subprocess.run(["runc", "kill", container.id, "KILL"], capture_output=True, check=False)
            container.process.wait(timeout=STOP_SECONDS)
    subprocess.run(["runc", "delete", "--force", container.id], capture_output=True, check=False)


def finished(container: Container, *, timeout: float = 60.0) -> int:
    """The exit code of a container that runs to completion (`sidecar init`)."""

    def exit_code() -> tuple[int] | None:
        code = container.exited()
        return None if code is None else (code,)

    (code,) = waiting.eventually_sync(
        exit_code, timeout=timeout, message=f"container {container.id} exits"
    )
    return code


@contextlib.contextmanager
def bridge(netns: str, port: int, target: str) -> Iterator[subprocess.Popen[bytes]]:
    """`smimesh.testing.bridging`: 127.0.0.1:port inside `netns` relays to `target` on the
    host's loopback (the operator in the container reaches the control plane so)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "smimesh.testing.bridging", netns, str(port), target],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    reaping.hold_group(process.pid)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if b"bridging" not in line:
            raise failures.BuildError(f"the bridge into {netns} did not start: {line!r}")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=STOP_SECONDS)
        if process.stdout is not None:
            process.stdout.close()
        reaping.release_group(process.pid)
