"""Sample pods for the injection tests, and a small RFC 6902 applier to check our patches."""

from __future__ import annotations

import copy
from typing import Any


def app_pod(**spec_changes: Any) -> dict[str, Any]:
    """A plain web pod with an httpGet liveness probe on a named port and a tcp readiness probe."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "serviceAccountName": "web",
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/web:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 5,
                    },
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 2},
                    "startupProbe": {"exec": {"command": ["true"]}},
                }
            ],
        },
    }
    pod["spec"].update(spec_changes)
    return pod


def annotated(pod: dict[str, Any], **annotations: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"].setdefault("annotations", {}).update(annotations)
    return pod


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """Apply add/remove/replace operations as RFC 6902 defines them (enough for our patches)."""
    document = copy.deepcopy(document)
    for operation in patch:
        tokens = [_unescape(token) for token in operation["path"].split("/")[1:]]
        if not tokens:
            document = copy.deepcopy(operation["value"])
            continue
        parent = document
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        op = operation["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                del parent[index]
            else:
                parent[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[last]
        else:
            assert op == "add" or last in parent, f"replace of a missing member: {operation}"
            parent[last] = copy.deepcopy(operation["value"])
    return document
