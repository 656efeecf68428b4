"""Root rotation with an overlap period: a small state machine over the mesh CA.

The operator holds one `MeshCa` (persisted by `secretdata`), calls `advance` periodically with
the current time, and publishes `bundle` to every workload. Three phases:

    STABLE ──begin(new)──▶ PREPARING ──(propagation elapsed)──▶ DRAINING ──(drain elapsed)──▶ STABLE
    roots: [old]           roots: [new, old]                    roots: [new, old]            [new]
    signs: old             signs: old                           signs: new                   new

- PREPARING: the new root is *trusted before it signs*. The old issuing CA keeps signing while
  every workload picks up the bundle holding both roots (`propagation`, by default one leaf
  lifetime: a sidecar gets the bundle with each certificate and renews at 70 % of it).
- DRAINING: the new issuing CA signs. The old root stays trusted until the last leaf it signed
  has expired: leaves live at most `max_leaf_lifetime`, so the old root is dropped at
  promotion time + `max_leaf_lifetime` + a margin for slow clocks (the back-dating margin).
- STABLE again with only the new root. A certificate chaining to the old root is now refused.

Pure: no clock (callers pass `now`), no I/O. `begin` accepts any new authority, ours from
`authority.create` or a user's new CA loaded by `secretdata`.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, replace

from smimesh.identity import authority, bundles, errors


class Phase(enum.Enum):
    STABLE = "stable"
    PREPARING = "preparing"
    DRAINING = "draining"


@dataclass(frozen=True)
class MeshCa:
    """Who signs (`active`), who is trusted (`bundle`), and where a rotation stands."""

    active: authority.CertificateAuthority
    bundle: bundles.TrustBundle
    phase: Phase = Phase.STABLE
    pending: authority.CertificateAuthority | None = None
    next_step_at: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.active.root not in self.bundle:
            raise errors.InvalidAuthorityError("the signing root must be in the trust bundle")
        if (self.phase is Phase.PREPARING) != (self.pending is not None):
            raise errors.InvalidAuthorityError("a pending authority exists exactly while PREPARING")
        if self.pending is not None and self.pending.root not in self.bundle:
            raise errors.InvalidAuthorityError("the pending root must already be trusted")
        if (self.phase is Phase.STABLE) != (self.next_step_at is None):
            raise errors.InvalidAuthorityError("only a rotation in progress has a next step time")


def stable(active: authority.CertificateAuthority) -> MeshCa:
    """A CA trusting only its own root: the state after first start."""
    return MeshCa(active, bundles.TrustBundle(active.trust_domain, (active.root,)))


def begin(
    state: MeshCa,
    new: authority.CertificateAuthority,
    *,
    now: datetime.datetime,
    propagation: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME,
) -> MeshCa:
    """Start rotating to `new`: trust its root now, let it sign after `propagation`."""
    if state.phase is not Phase.STABLE:
        raise errors.InvalidAuthorityError(
            f"a rotation is already in progress ({state.phase.value} until {state.next_step_at})"
        )
    if new.trust_domain != state.active.trust_domain:
        raise errors.InvalidAuthorityError(
            f"the new CA is for {new.trust_domain!r}, the mesh is {state.active.trust_domain!r}"
        )
    if new.root == state.active.root:
        raise errors.InvalidAuthorityError("the new CA has the same root; nothing to rotate")
    return MeshCa(
        active=state.active,
        bundle=state.bundle.with_root(new.root),
        phase=Phase.PREPARING,
        pending=new,
        next_step_at=now + propagation,
    )


def advance(
    state: MeshCa,
    *,
    now: datetime.datetime,
    max_leaf_lifetime: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME,
    drain_margin: datetime.timedelta = authority.BACKDATE,
) -> MeshCa:
    """Take the step whose time has come, if any (idempotent; call it as often as you like).

    DRAINING starts when the promotion actually happens, so a late call never drops the old
    root before the leaves it signed have expired; `drain_margin` is added for peers whose
    clocks run behind (by default the back-dating margin; tests pass less).
    """
    if state.next_step_at is None or now < state.next_step_at:
        return state
    if state.phase is Phase.PREPARING:
        assert state.pending is not None
        return MeshCa(
            active=state.pending,
            bundle=state.bundle,
            phase=Phase.DRAINING,
            next_step_at=now + max_leaf_lifetime + drain_margin,
        )
    trusted = bundles.TrustBundle(state.bundle.trust_domain, (state.active.root,))
    return replace(state, bundle=trusted, phase=Phase.STABLE, next_step_at=None)
