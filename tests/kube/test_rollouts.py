"""The rollout states `kubectl smi install --wait` reports, as `kubectl rollout status` judges
them: the controller has not seen the spec, replicas updating, old ones terminating, updated
ones unavailable, the progress deadline passed, done. The wait itself runs against the real
apiserver in tests/packaging/test_user_install.py."""

from __future__ import annotations

import pytest

from smimesh.kube import names, rollouts


def _deployment(generation: int = 2, wanted: int = 2, **status: object) -> dict[str, object]:
    return {
        "metadata": {"name": names.OPERATOR_DEPLOYMENT, "generation": generation},
        "spec": {"replicas": wanted},
        "status": status,
    }


@pytest.mark.fast
@pytest.mark.parametrize(
    ("deployment", "text"),
    [
        (_deployment(observedGeneration=1), "waiting for the Deployment controller to see"),
        (
            _deployment(observedGeneration=2, updatedReplicas=1, replicas=2),
            "1 of 2 replicas updated",
        ),
        (
            _deployment(observedGeneration=2, updatedReplicas=2, replicas=3, availableReplicas=2),
            "1 old replicas pending termination",
        ),
        (
            _deployment(observedGeneration=2, updatedReplicas=2, replicas=2, availableReplicas=1),
            "1 of 2 updated replicas available",
        ),
    ],
)
def test_a_rollout_in_progress_says_what_it_waits_for(
    deployment: dict[str, object], text: str
) -> None:
    state = rollouts.rollout_state(deployment)
    assert not state.done
    assert not state.failed
    assert state.text.startswith(text)


@pytest.mark.fast
def test_a_rollout_is_done_once_every_replica_is_updated_and_available() -> None:
    done = _deployment(observedGeneration=2, updatedReplicas=2, replicas=2, availableReplicas=2)
    assert rollouts.rollout_state(done) == rollouts.Rollout(True, "rolled out")


@pytest.mark.fast
def test_a_rollout_past_its_deadline_failed_with_the_controllers_reason() -> None:
    stuck = _deployment(
        observedGeneration=2,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "smimesh-operator-1" has timed out progressing.'}
        ],
    )  # fmt: skip
    state = rollouts.rollout_state(stuck)
    assert state.failed
    assert not state.done
    assert state.text == 'ReplicaSet "smimesh-operator-1" has timed out progressing.'
