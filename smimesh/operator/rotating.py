"""What the mesh CA needs next, decided from what the CA Secret holds and the clock: start a
root rotation (asked for, or the root is close to expiry), take the rotation's next step, or
renew the issuing CA before it expires.

Pure: `decide` takes the loaded `rotation.MeshCa`, the Secret's request annotations, `now`
and a `Policy`, and returns the new state with what was done. `maintaining` feeds it from the
Secret and writes the result back; `kubectl smi ca rotate` sets the annotation
`names.ROTATE_REQUESTED_ANNOTATION`, and the operator records the request it handled in
`names.ROTATE_HANDLED_ANNOTATION`, so each one is acted on once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from smimesh.identity import authority, errors, rotation
from smimesh.kube import names

ISSUER_RENEW_FRACTION = 1 / 3
"""The issuing CA is renewed once less than this share of its lifetime remains."""
DEFAULT_AUTO_ROTATE_BEFORE = datetime.timedelta(days=90)
"""A root with less validity than this is rotated without being asked (0 turns that off)."""


@dataclass(frozen=True)
class Policy:
    """How the operator runs rotations; `propagation` and `max_leaf_lifetime` are the workload
    certificate lifetime (a sidecar renews within it, so it has the new bundle by then)."""

    propagation: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME
    max_leaf_lifetime: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME
    drain_margin: datetime.timedelta = authority.BACKDATE
    auto_rotate_before: datetime.timedelta = DEFAULT_AUTO_ROTATE_BEFORE
    issuer_lifetime: datetime.timedelta = authority.DEFAULT_ISSUER_LIFETIME
    root_lifetime: datetime.timedelta = authority.DEFAULT_ROOT_LIFETIME


@dataclass(frozen=True)
class Step:
    """One thing done (or refused), for the log and an Event on the Secret."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Decision:
    state: rotation.MeshCa
    steps: tuple[Step, ...] = ()
    handled: str | None = None
    """The request value to record as handled, when a new request was seen."""

    @property
    def changed(self) -> bool:
        """True if the Secret must be written (the CA changed or a request was handled)."""
        return self.handled is not None or any(not step.warning for step in self.steps)


NewAuthority = Callable[[datetime.datetime], authority.CertificateAuthority]


def fresh_authority(trust_domain: str, policy: Policy) -> NewAuthority:
    """The default source of new roots: `authority.create` with the policy's lifetimes."""

    def create(now: datetime.datetime) -> authority.CertificateAuthority:
        return authority.create(
            trust_domain,
            now=now,
            root_lifetime=policy.root_lifetime,
            issuer_lifetime=policy.issuer_lifetime,
        )

    return create


def requested(annotations: dict[str, str] | None) -> str | None:
    """The rotation request not handled yet, if any."""
    found = (annotations or {}).get(names.ROTATE_REQUESTED_ANNOTATION)
    if not found or found == (annotations or {}).get(names.ROTATE_HANDLED_ANNOTATION):
        return None
    return found


def decide(
    state: rotation.MeshCa,
    *,
    request: str | None,
    now: datetime.datetime,
    policy: Policy,
    new_authority: NewAuthority,
) -> Decision:
    """Everything due at `now`, in order: a requested or automatic start, the rotation's next
    step, the issuing CA's renewal. Idempotent: deciding again at once changes nothing."""
    steps: list[Step] = []
    if request is not None:
        if state.phase is rotation.Phase.STABLE:
            state = _begin(state, new_authority(now), now, policy)
            steps.append(Step("RotationStarted", f"root rotation started as requested ({request})"))
        else:
            steps.append(
                Step(
                    "RotationInProgress",
                    f"rotation request {request} ignored: a rotation is already "
                    f"{state.phase.value}, next step at {state.next_step_at}",
                    warning=True,
                )
            )
    elif _root_expiring(state, now, policy):
        left = state.active.root.not_valid_after_utc - now
        if state.active.root_key is None:
            # The user's tooling owns this root; replacing it unasked would take it over.
            message = (
                f"the root expires in {left} and its key is not held by smimesh: rotate it "
                "with the tooling that owns it, or run `kubectl smi ca rotate` to replace it "
                "with a root smimesh makes"
            )
            steps.append(Step("RootExpiring", message, warning=True))
        else:
            state = _begin(state, new_authority(now), now, policy)
            steps.append(
                Step("RotationStarted", f"root rotation started: the root expires in {left}")
            )
    before = state.phase
    state = rotation.advance(
        state, now=now, max_leaf_lifetime=policy.max_leaf_lifetime, drain_margin=policy.drain_margin
    )
    if state.phase is not before:
        steps.append(_advanced(state))
    renewed, step = _renew_issuer(state, now, policy)
    if step is not None:
        steps.append(step)
    return Decision(renewed, tuple(steps), handled=request)


def _begin(
    state: rotation.MeshCa,
    new: authority.CertificateAuthority,
    now: datetime.datetime,
    policy: Policy,
) -> rotation.MeshCa:
    return rotation.begin(state, new, now=now, propagation=policy.propagation)


def _root_expiring(state: rotation.MeshCa, now: datetime.datetime, policy: Policy) -> bool:
    if state.phase is not rotation.Phase.STABLE or not policy.auto_rotate_before:
        return False
    return state.active.root.not_valid_after_utc - now < policy.auto_rotate_before


def _advanced(state: rotation.MeshCa) -> Step:
    if state.phase is rotation.Phase.DRAINING:
        return Step(
            "RootPromoted",
            f"the new root signs now; the old root stays trusted until {state.next_step_at}",
        )
    return Step("RotationFinished", "root rotation finished: only the new root is trusted")


def issuer_due(ca: authority.CertificateAuthority, now: datetime.datetime) -> bool:
    """True once less than `ISSUER_RENEW_FRACTION` of the issuing CA's lifetime remains and a
    new one would live longer (it never outlives the root)."""
    issuer = ca.issuer
    if issuer == ca.root or issuer.not_valid_after_utc >= ca.root.not_valid_after_utc:
        return False
    lifetime = issuer.not_valid_after_utc - issuer.not_valid_before_utc
    return issuer.not_valid_after_utc - now < lifetime * ISSUER_RENEW_FRACTION


def _renew_issuer(
    state: rotation.MeshCa, now: datetime.datetime, policy: Policy
) -> tuple[rotation.MeshCa, Step | None]:
    if not issuer_due(state.active, now):
        return state, None
    try:
        renewed = state.active.renew_issuer(now=now, lifetime=policy.issuer_lifetime)
    except errors.InvalidAuthorityError as exc:
        expires = state.active.issuer.not_valid_after_utc
        return state, Step("IssuerExpiring", f"the issuing CA expires {expires}: {exc}", True)
    until = renewed.issuer.not_valid_after_utc
    return (
        rotation.MeshCa(renewed, state.bundle, state.phase, state.pending, state.next_step_at),
        Step("IssuerRenewed", f"the issuing CA was renewed under the same root, until {until}"),
    )
