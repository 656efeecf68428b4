"""What the operator decides about the mesh CA, with an injected clock: a rotation request is
acted on once, a root close to expiry rotates by itself, the rotation walks its phases on
time, and the issuing CA is renewed when a third of its life is left (if the root key is ours)."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from smimesh.identity import authority, rotation
from smimesh.kube import names
from smimesh.operator import rotating

pytestmark = pytest.mark.fast

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)
DAY = datetime.timedelta(days=1)
POLICY = rotating.Policy(
    propagation=15 * SECOND, max_leaf_lifetime=15 * SECOND, drain_margin=2 * SECOND
)


def _new(now: datetime.datetime) -> authority.CertificateAuthority:
    return authority.create("cluster.local", now=now)


def _decide(
    state: rotation.MeshCa,
    now: datetime.datetime,
    *,
    request: str | None = None,
    policy: rotating.Policy = POLICY,
) -> rotating.Decision:
    return rotating.decide(state, request=request, now=now, policy=policy, new_authority=_new)


def test_a_request_starts_a_rotation_and_is_recorded_as_handled() -> None:
    state = rotation.stable(_new(T0))
    decision = _decide(state, T0, request="2026-01-01T00:00:00Z")
    assert decision.state.phase is rotation.Phase.PREPARING
    assert decision.state.next_step_at == T0 + 15 * SECOND
    assert decision.handled == "2026-01-01T00:00:00Z"
    assert decision.changed
    assert [step.reason for step in decision.steps] == ["RotationStarted"]


def test_a_handled_request_is_not_seen_again() -> None:
    annotations = {names.ROTATE_REQUESTED_ANNOTATION: "r1"}
    assert rotating.requested(annotations) == "r1"
    annotations[names.ROTATE_HANDLED_ANNOTATION] = "r1"
    assert rotating.requested(annotations) is None
    annotations[names.ROTATE_REQUESTED_ANNOTATION] = "r2"
    assert rotating.requested(annotations) == "r2"
    assert rotating.requested(None) is None


def test_a_request_during_a_rotation_is_recorded_but_starts_nothing() -> None:
    preparing = _decide(rotation.stable(_new(T0)), T0, request="r1").state
    decision = _decide(preparing, T0 + SECOND, request="r2")
    assert decision.state is preparing
    assert decision.handled == "r2"
    assert [(step.reason, step.warning) for step in decision.steps] == [
        ("RotationInProgress", True)
    ]


def test_nothing_is_due_on_a_young_stable_ca() -> None:
    decision = _decide(rotation.stable(_new(T0)), T0 + DAY)
    assert decision.state.phase is rotation.Phase.STABLE
    assert not decision.changed
    assert decision.steps == ()


def test_a_rotation_walks_preparing_draining_stable_on_the_clock() -> None:
    old = _new(T0)
    preparing = _decide(rotation.stable(old), T0, request="r1").state
    new_root = preparing.bundle.roots[0]
    assert _decide(preparing, T0 + 14 * SECOND).state is preparing

    draining = _decide(preparing, T0 + 15 * SECOND)
    assert draining.state.phase is rotation.Phase.DRAINING
    assert draining.state.active.root == new_root
    assert draining.state.bundle.roots == (new_root, old.root)
    assert [step.reason for step in draining.steps] == ["RootPromoted"]
    assert draining.state.next_step_at == T0 + 32 * SECOND

    done = _decide(draining.state, T0 + 32 * SECOND)
    assert done.state.phase is rotation.Phase.STABLE
    assert done.state.bundle.roots == (new_root,)
    assert [step.reason for step in done.steps] == ["RotationFinished"]


def test_a_root_close_to_expiry_rotates_without_a_request() -> None:
    ca = authority.create("cluster.local", now=T0, root_lifetime=100 * DAY)
    policy = dataclasses.replace(POLICY, auto_rotate_before=30 * DAY)
    assert not _decide(rotation.stable(ca), T0 + 69 * DAY, policy=policy).changed
    decision = _decide(rotation.stable(ca), T0 + 71 * DAY, policy=policy)
    assert decision.state.phase is rotation.Phase.PREPARING
    assert decision.handled is None
    assert "expires in" in decision.steps[0].message


def test_automatic_rotation_can_be_turned_off() -> None:
    ca = authority.create("cluster.local", now=T0, root_lifetime=100 * DAY)
    policy = dataclasses.replace(POLICY, auto_rotate_before=datetime.timedelta(0))
    assert not _decide(rotation.stable(ca), T0 + 99 * DAY, policy=policy).changed


def test_the_issuing_ca_is_renewed_with_a_third_of_its_life_left() -> None:
    ca = authority.create("cluster.local", now=T0, issuer_lifetime=30 * DAY)
    state = rotation.stable(ca)
    assert not _decide(state, T0 + 19 * DAY).changed
    decision = _decide(state, T0 + 21 * DAY)
    renewed = decision.state.active
    assert [step.reason for step in decision.steps] == ["IssuerRenewed"]
    assert renewed.root == ca.root, "same root: nothing for workloads to learn"
    assert renewed.issuer != ca.issuer
    assert renewed.issuer.not_valid_after_utc > ca.issuer.not_valid_after_utc
    assert decision.state.bundle == state.bundle
    assert not _decide(decision.state, T0 + 21 * DAY).changed


def test_an_issuing_ca_already_ending_with_its_root_is_not_renewed_in_a_loop() -> None:
    ca = authority.create("cluster.local", now=T0, root_lifetime=10 * DAY)
    assert ca.issuer.not_valid_after_utc == ca.root.not_valid_after_utc
    policy = dataclasses.replace(POLICY, auto_rotate_before=datetime.timedelta(0))
    assert not _decide(rotation.stable(ca), T0 + 9 * DAY, policy=policy).changed


def test_without_the_root_key_the_issuer_is_not_renewed_and_a_warning_says_why() -> None:
    ca = dataclasses.replace(
        authority.create("cluster.local", now=T0, issuer_lifetime=30 * DAY), root_key=None
    )
    decision = _decide(rotation.stable(ca), T0 + 25 * DAY)
    assert decision.state.active is ca
    assert not decision.changed, "a warning alone writes nothing"
    (step,) = decision.steps
    assert (step.reason, step.warning) == ("IssuerExpiring", True)
    assert "root key is not held" in step.message


def test_a_users_root_close_to_expiry_is_not_replaced_unasked() -> None:
    ca = dataclasses.replace(
        authority.create("cluster.local", now=T0, root_lifetime=100 * DAY), root_key=None
    )
    policy = dataclasses.replace(POLICY, auto_rotate_before=30 * DAY)
    decision = _decide(rotation.stable(ca), T0 + 71 * DAY, policy=policy)
    assert decision.state.phase is rotation.Phase.STABLE
    assert not decision.changed
    assert [(step.reason, step.warning) for step in decision.steps] == [("RootExpiring", True)]
    asked = _decide(rotation.stable(ca), T0 + 71 * DAY, request="r1", policy=policy)
    assert asked.state.phase is rotation.Phase.PREPARING, "a request still replaces it"
