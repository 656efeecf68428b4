"""The conformance stage on any cluster: the test app deployed as Pods, with the same layout
as the local stage (namespaces strict and permissive; apps a, b, c; Service `backend`).

`manifests` renders every object for a mesh profile (`profiles`), and is pure; `deploy`
applies them with kubectl, waits until every Pod is Ready and returns a `stages.Stage` whose
apps are `apps.PodApp` handles (the apiserver's pod proxy to the control port); `remove`
deletes the namespaces. Used by `running.run_current`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import smimesh
from smimesh._aio import waiting
from smimesh.conformance import apps, profiles, stages
from smimesh.kube import names
from smimesh.testing import clusters

DEFAULT_IMAGE = f"{names.IMAGE_REPOSITORY}:{smimesh.__version__}"
"""The smimesh image (docs/image.md); `smimesh conformance app` runs the test app in it."""
APP_COMMAND = ("smimesh", "conformance", "app")
APPS = ("a", "b", "c")
KINDS: tuple[tuple[str, profiles.Access], ...] = (("strict", "strict"), ("permis", "permissive"))

Object = dict[str, Any]


class DeployError(RuntimeError):
    """The test app could not be deployed or did not become Ready; the message says why."""


def namespaces(prefix: str) -> tuple[str, str]:
    """The strict and the permissive namespace of a stage."""
    return f"{prefix}-strict", f"{prefix}-permis"


def _pod(namespace: str, app: str, profile: profiles.Profile, image: str) -> Object:
    labels = {"app": app, **({"tier": "backend"} if app != "a" else {})}
    return app_pod(namespace, f"{app}-1", f"service-{app}", labels, profile, image)


def app_pod(
    namespace: str,
    name: str,
    account: str,
    labels: dict[str, str],
    profile: profiles.Profile,
    image: str,
) -> Object:
    """A Pod of the test app (`APP_COMMAND`): the mesh port, the control port (left out of
    interception as `profile` says) and readiness on the control port. Also `smimesh demo
    --cluster node`'s Pods."""
    annotations = profile.pod_metadata(control_port=apps.CONTROL_PORT)
    metadata: Object = {"name": name, "namespace": namespace, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    env = {
        "PORT": str(apps.MESH_PORT),
        "CONTROL_PORT": str(apps.CONTROL_PORT),
        "SMIMESH_WORKLOAD": f"{namespace}/{name}",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": account,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": list(APP_COMMAND),
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "ports": [
                        {"name": "http", "containerPort": apps.MESH_PORT},
                        {"name": "control", "containerPort": apps.CONTROL_PORT},
                    ],
                    "readinessProbe": {
                        "tcpSocket": {"port": apps.CONTROL_PORT},
                        "periodSeconds": 2,
                    },
                }
            ],
        },
    }


def service(namespace: str, name: str, selector: dict[str, str]) -> Object:
    """A Service to the test app's mesh port, as port 80."""
    port = {"name": "http", "port": 80, "targetPort": apps.MESH_PORT, "appProtocol": "http"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "ports": [port]},
    }


def manifests(profile: profiles.Profile, *, prefix: str, image: str) -> list[list[Object]]:
    """Two batches to apply in order: the Namespaces (so the mesh sees their labels before
    any Pod is admitted), then ServiceAccounts, Services and Pods."""
    spaces: list[Object] = []
    rest: list[Object] = []
    for namespace, (_, access) in zip(namespaces(prefix), KINDS, strict=True):
        spaces.append(profile.namespace(namespace, access))
        for app in APPS:
            rest.append(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": f"service-{app}", "namespace": namespace},
                }
            )
            rest.append(service(namespace, app, {"app": app}))
        rest.append(service(namespace, "backend", {"tier": "backend"}))
        rest.extend(_pod(namespace, app, profile, image) for app in APPS)
    return [spaces, rest]


def _not_ready(cluster: clusters.Cluster, namespace: str) -> list[str]:
    """What keeps the stage's Pods in `namespace` from being Ready, one line per Pod."""
    listed = cluster.kubectl("-n", namespace, "get", "pods", "-o", "json")
    if listed.returncode != 0:
        return [f"{namespace}: {listed.stderr.strip()}"]
    found = {item["metadata"]["name"]: item for item in json.loads(listed.stdout)["items"]}
    waiting = []
    for app in APPS:
        pod = found.get(f"{app}-1")
        if pod is None:
            waiting.append(f"{namespace}/{app}-1: not found (deleted since it was applied)")
            continue
        status = pod.get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conditions.get("Ready") == "True":
            continue
        reasons = []
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            for what, detail in state.items():
                if what != "running":
                    reasons.append(f"{container['name']}: {what} {detail.get('reason', '')}")
        if status.get("message"):
            reasons.append(status["message"].strip().splitlines()[0])
        phase = status.get("phase", "Pending")
        waiting.append(f"{namespace}/{app}-1: {phase} {'; '.join(reasons)}".rstrip())
    return waiting


def deploy(
    cluster: clusters.Cluster,
    profile: profiles.Profile,
    *,
    prefix: str,
    image: str = DEFAULT_IMAGE,
    timeout: float = 300.0,
    say: Callable[[str], None] = lambda message: None,
) -> stages.Stage:
    """Apply the stage, wait for its Pods to be Ready, and hand back the stage."""
    for batch in manifests(profile, prefix=prefix, image=image):
        items = {"apiVersion": "v1", "kind": "List", "items": batch}
        applied = cluster.kubectl("apply", "-f", "-", input=json.dumps(items))
        if applied.returncode != 0:
            raise DeployError(f"applying the test app failed: {applied.stderr.strip()}")
    say(f"waiting for 6 test-app Pods ({image}) to be Ready")
    unready: list[str] = []

    def ready() -> bool:
        nonlocal unready
        unready = [line for ns in namespaces(prefix) for line in _not_ready(cluster, ns)]
        if any(": Failed" in line for line in unready):  # a failed Pod never becomes Ready
            raise DeployError("test-app Pods failed:\n  " + "\n  ".join(unready))
        return not unready

    waiting.eventually_sync(
        ready,
        timeout=timeout,
        message=lambda: (
            f"test-app Pods not Ready within {timeout:.0f}s:\n  " + "\n  ".join(unready)
        ),
        interval=1.0,
        error=DeployError,
    )
    api = cluster.api_client()
    spaces = []
    for namespace in namespaces(prefix):
        space = stages.Namespace(namespace)
        for app in APPS:
            space.apps[app] = apps.PodApp(api, namespace, f"{app}-1")
        spaces.append(space)
    return stages.Stage(
        cluster,
        strict=spaces[0],
        open=spaces[1],
        programmed=profile.programmed,
        permissive=profile.no_permissive,
    )


def remove(cluster: clusters.Cluster, *, prefix: str) -> None:
    """Delete the stage's namespaces (without waiting for them to go)."""
    cluster.kubectl(
        "delete", "namespace", "--wait=false", "--ignore-not-found", *namespaces(prefix)
    )
