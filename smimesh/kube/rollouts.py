"""Where a Deployment's rollout stands (`rollout_state`, pure, as `kubectl rollout status`
judges it) and waiting for it with progress (`wait_rollout`).

Used by `kubectl smi install --wait` (`smimesh.cli.installing`) for the operator Deployment
that `installing` applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import dynamic
from kubernetes.dynamic import exceptions

from smimesh._aio import waiting
from smimesh.kube import names

Object = dict[str, Any]


class RolloutError(RuntimeError):
    """The rollout failed (its progress deadline passed) or did not finish in time."""


@dataclass(frozen=True)
class Rollout:
    """Where a Deployment's rollout stands, as `kubectl rollout status` judges it."""

    done: bool
    text: str
    """What it waits for, or `rolled out`."""
    failed: bool = False
    """The Deployment's controller gave up (its progress deadline passed)."""


def rollout_state(deployment: Object) -> Rollout:
    """The rollout of a Deployment (a dict as the API returns it): done once its controller has
    seen the latest spec and every replica is updated and available, none old left."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return Rollout(False, str(condition.get("message") or "progress deadline exceeded"),
                           failed=True)  # fmt: skip
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return Rollout(False, "waiting for the Deployment controller to see the new spec")
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return Rollout(False, f"{updated} of {wanted} replicas updated")
    if total > updated:
        return Rollout(False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return Rollout(False, f"{available} of {updated} updated replicas available")
    return Rollout(True, "rolled out")


def wait_rollout(
    api: dynamic.DynamicClient,
    namespace: str,
    *,
    timeout: float,
    say: Callable[[str], None],
    name: str = names.OPERATOR_DEPLOYMENT,
) -> None:
    """Until Deployment `namespace/name` has rolled out, saying each new state; RolloutError
    if its controller gives up or `timeout` seconds pass."""
    deployments = api.resources.get(api_version="apps/v1", kind="Deployment")
    said: list[str] = []

    def rolled_out() -> bool:
        state = rollout_state(deployments.get(name=name, namespace=namespace).to_dict())
        if not said or said[-1] != state.text:
            said.append(state.text)
            say(state.text)
        if state.failed:
            raise RolloutError(f"deployment {namespace}/{name} failed: {state.text}")
        return state.done

    waiting.eventually_sync(
        rolled_out,
        timeout=timeout,
        message=lambda: (
            f"deployment {namespace}/{name} did not roll out in {timeout:.0f}s: "
            f"{said[-1] if said else 'not found'}"
        ),
        interval=0.5,
        ignoring=(exceptions.NotFoundError,),
        error=RolloutError,
    )
