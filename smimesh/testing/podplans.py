"""What a local node (`kubelet`) runs for a Pod: `plan` reads a Pod as the API returns it and
says whether the node runs it (one app container of the node's image, not gated, not
terminating) and how: the command, its environment (literal values and the downward API
fields the node can fill), its ports, and whether the injection webhook meshed it, which
moves the app's intercepted ports behind the sidecar. Pure, apart from `executable`, which
finds the command's program on this host.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smimesh.kube import names

MESH_CONTAINERS = frozenset({names.PROXY_CONTAINER, names.INIT_CONTAINER})
APP_PORT_OFFSET = 10000
"""A meshed pod's app moves from port p to p + 10000 (the sidecar holds p)."""
FIELDS = ("metadata.name", "metadata.namespace", "status.podIP", "spec.serviceAccountName")


class PlanError(RuntimeError):
    """A Pod's command cannot run on this host; the message says why."""


@dataclass(frozen=True)
class PodPlan:
    """What the node runs for one Pod."""

    namespace: str
    name: str
    uid: str
    service_account: str
    labels: Mapping[str, str]
    command: tuple[str, ...]
    env: Mapping[str, str]
    fields: Mapping[str, str]
    """Env var -> field path (downward API), resolved once the pod has its address."""
    ports: tuple[int, ...]
    meshed: bool
    excluded: frozenset[int]

    @property
    def app_ports(self) -> dict[int, int]:
        """Port callers use -> where the app listens (only meshed pods move)."""
        if not self.meshed:
            return {}
        return {p: p + APP_PORT_OFFSET for p in self.ports if p not in self.excluded}


def plan(pod: Mapping[str, Any], *, image: str) -> PodPlan | None:
    """How to run `pod` (the API's JSON form), or None if this node does not run it: another
    node has it, it is gated or terminating, or it is not exactly one app container of
    `image` (the mesh's own containers aside)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if spec.get("schedulingGates") or meta.get("deletionTimestamp"):
        return None
    own = [c for c in spec.get("containers") or [] if c.get("name") not in MESH_CONTAINERS]
    inits = [c for c in spec.get("initContainers") or [] if c.get("name") not in MESH_CONTAINERS]
    if len(own) != 1 or inits or own[0].get("image") != image:
        return None
    (container,) = own
    command = (*(container.get("command") or ()), *(container.get("args") or ()))
    if not command:
        return None  # the image's default command is the operator's, not an app
    annotations = meta.get("annotations") or {}
    env: dict[str, str] = {}
    fields: dict[str, str] = {}
    for item in container.get("env") or []:
        reference = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if reference in FIELDS:
            fields[item["name"]] = reference
        elif "value" in item:
            env[item["name"]] = str(item["value"])
    excluded = {
        int(p)
        for p in annotations.get(names.EXCLUDE_INBOUND_PORTS_ANNOTATION, "").split(",")
        if p.strip()
    }
    return PodPlan(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        service_account=spec.get("serviceAccountName") or "default",
        labels=dict(meta.get("labels") or {}),
        command=tuple(command),
        env=env,
        fields=fields,
        ports=tuple(int(p["containerPort"]) for p in container.get("ports") or []),
        meshed=names.INJECTED_ANNOTATION in annotations,
        excluded=frozenset(excluded),
    )


def executable(name: str) -> str:
    """A container command's program, found beside this Python (the venv) or on PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise PlanError(f"{name!r} is not installed on this node")
    return found
