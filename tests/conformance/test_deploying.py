"""Deploying the stage stops waiting as soon as a test-app Pod has failed, and says why; Pods
that never get Ready time out with what each waits for. kubectl is a script here."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from smimesh.conformance import deploying, profiles
from smimesh.testing import clusters


def _cluster(tmp_path: Path, pods: list[dict[str, object]]) -> clusters.Cluster:
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps({"items": pods}))
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\ncase "$*" in *" get pods "*) cat {listing};; esac\nexit 0\n')
    kubectl.chmod(0o755)
    return clusters.Cluster("existing", tmp_path / "kubeconfig", str(kubectl))


def _pod(name: str, status: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": name}, "status": status}


def test_a_failed_pod_ends_the_wait_at_once_with_its_reason(tmp_path: Path) -> None:
    failed = {"phase": "Failed", "message": "PlanError: 'smimesh' is not installed\nmore"}
    cluster = _cluster(tmp_path, [_pod("a-1", failed)])
    started = time.monotonic()
    with pytest.raises(deploying.DeployError) as raised:
        deploying.deploy(cluster, profiles.lookup("none"), prefix="t", timeout=60)
    assert time.monotonic() - started < 10
    assert "t-strict/a-1: Failed PlanError: 'smimesh' is not installed" in str(raised.value)
    assert "t-strict/b-1: not found" in str(raised.value)


def test_pods_that_never_get_ready_time_out_naming_what_they_wait_for(tmp_path: Path) -> None:
    waiting = {
        "phase": "Pending",
        "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ErrImagePull"}}}],
    }
    cluster = _cluster(tmp_path, [_pod(f"{app}-1", waiting) for app in "abc"])
    with pytest.raises(deploying.DeployError, match="not Ready within 1s") as raised:
        deploying.deploy(cluster, profiles.lookup("none"), prefix="t", timeout=1)
    assert "t-permis/c-1: Pending app: waiting ErrImagePull" in str(raised.value)
