"""Every workload kind `kubectl smi inject` handles, each wrapping the sample pod's template."""

from __future__ import annotations

from typing import Any

from .pods import app_pod


def workload(kind: str, name: str = "web", **spec_changes: Any) -> dict[str, Any]:
    """A minimal valid object of `kind` whose pods are the sample pod."""
    template = {"metadata": {"labels": {"app": "web"}}, "spec": app_pod(**spec_changes)["spec"]}
    selector = {"matchLabels": {"app": "web"}}
    if kind == "Pod":
        pod = app_pod(**spec_changes)
        pod["metadata"]["name"] = name
        return pod
    if kind in ("Deployment", "ReplicaSet"):
        spec = {"replicas": 1, "selector": selector, "template": template}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    if kind == "StatefulSet":
        spec = {"serviceName": name, "selector": selector, "template": template}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    if kind == "DaemonSet":
        spec = {"selector": selector, "template": template}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    if kind == "ReplicationController":
        spec = {"replicas": 1, "selector": {"app": "web"}, "template": template}
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    template["spec"]["restartPolicy"] = "Never"
    job_spec = {"backoffLimit": 0, "template": template}
    if kind == "Job":
        return {
            "apiVersion": "batch/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": job_spec,
        }
    assert kind == "CronJob"
    spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": job_spec}}
    return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
)


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside any workload from `workload`."""
    kind = document["kind"]
    if kind == "Pod":
        return document["spec"]
    if kind == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return document["spec"]["template"]["spec"]


SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}
