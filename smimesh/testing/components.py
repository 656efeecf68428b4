"""A program of someone else's run beside the test cluster as a process of ours — Prometheus,
the Flagger and Argo Rollouts controllers: started in its own process group that the reaper
holds (a killed runner leaves nothing behind), its output in a log file, awaited until a
readiness probe passes (or stopped with its log's tail if it exits first), stopped on exit.

`install`/`uninstall` apply and remove such a component's own objects (its CRDs and RBAC).
Used by `prometheus`, `flagger` and `argorollouts`; built on `controlplane.Process` (how the
control plane's own components stop) and `reaping`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from smimesh._aio import waiting
from smimesh.testing import clusters, controlplane, reaping, starting

STOP_GRACE = 5.0


class ComponentError(RuntimeError):
    """The component did not start or exited; the message names it and shows its log."""


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""A controller's CRDs are megabytes of YAML: libyaml reads them ten times faster."""


def manifests(files: Sequence[Path], namespace: str) -> list[dict[str, Any]]:
    """A controller's own manifests (from its module's source, so they match the binary),
    its ServiceAccounts and the subjects bound to them moved into `namespace`, which comes
    first."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    ]
    for file in files:
        objects.extend(o for o in yaml.load_all(file.read_text(), Loader=_LOADER) if o)
    for found in objects:
        if found["kind"] == "ServiceAccount":
            found["metadata"]["namespace"] = namespace
        for subject in found.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
    return objects


def document(objects: Sequence[dict[str, Any]]) -> str:
    """Objects as one JSON List for kubectl (a controller's CRDs are megabytes: dumping them
    as YAML takes a second)."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


def install(cluster: clusters.Cluster, objects: Sequence[dict[str, Any]], *, what: str) -> None:
    """Apply a component's own objects (server-side: its CRDs are too big for the
    last-applied annotation) and wait until its CRDs are established; `ComponentError`
    naming `what` if either fails."""
    done = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                           input=document(objects))  # fmt: skip
    if done.returncode != 0:
        raise ComponentError(f"applying {what} failed: {done.stderr}")
    crds = [f"crd/{o['metadata']['name']}" for o in objects
            if o["kind"] == "CustomResourceDefinition"]  # fmt: skip
    if not crds:
        return
    waited = cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
    if waited.returncode != 0:
        raise ComponentError(f"the CRDs of {what} were not established: {waited.stderr}")


def uninstall(cluster: clusters.Cluster, objects: Sequence[dict[str, Any]]) -> None:
    """Delete what `install` applied (and with its CRDs every object of theirs)."""
    cluster.kubectl("delete", "--ignore-not-found", "--timeout=60s", "-f", "-",
                    input=document(objects))  # fmt: skip


@contextmanager
def installed(
    cluster: clusters.Cluster,
    objects: Sequence[dict[str, Any]],
    *,
    what: str,
    account: tuple[str, str],
    run_dir: Path,
) -> Iterator[Path]:
    """A controller's objects installed, and a kubeconfig (in `run_dir`) that authenticates
    as its ServiceAccount `account` (namespace, name), so it runs under exactly its own
    RBAC; everything but its Namespace removed afterwards (a second start in the session
    must not find that Namespace terminating, and without kube-controller-manager it never
    finishes)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        install(cluster, objects, what=what)
        yield cluster.kubeconfig_for(*account, run_dir / "kubeconfig")
    finally:
        uninstall(cluster, [o for o in objects if o["kind"] != "Namespace"])


@dataclass
class Component(starting.Started):
    """`argv` run as `name` with its log at `log`, ready once `ready()` is true."""

    name: str
    argv: Sequence[str]
    log: Path
    ready: Callable[[], bool]
    ready_timeout: float = 90.0
    env: dict[str, str] | None = None
    process: controlplane.Process | None = field(default=None, init=False)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            popen = subprocess.Popen(
                list(self.argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=reaping.die_with_parent, env=self.env,
            )  # fmt: skip
        reaping.hold_group(popen.pid)
        self.process = controlplane.Process(self.name, popen, self.log, list(self.argv))
        try:
            waiting.eventually_sync(
                lambda: (self._alive() and self.ready()) or None,
                timeout=self.ready_timeout,
                message=lambda: (
                    f"{self.name} was not ready after {self.ready_timeout:.0f}s; its log "
                    f"({self.log}) ends with:\n{self.tail()}"
                ),
                interval=0.2,
                ignoring=(OSError, httpx.HTTPError),  # not listening yet
                error=ComponentError,
            )
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> bool:
        assert self.process is not None
        code = self.process.popen.poll()
        if code is not None:
            raise ComponentError(
                f"{self.name} exited with code {code}; its log ({self.log}) ends with:\n"
                f"{self.tail()}"
            )
        return True

    def check(self) -> None:
        """Raise `ComponentError` if the component has exited since it started."""
        self._alive()

    def tail(self, lines: int = 30) -> str:
        return self.process.tail(lines) if self.process is not None else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(STOP_GRACE)
