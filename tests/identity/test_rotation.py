"""Root rotation: the new root is trusted before it signs, the old one until its leaves expire."""

from __future__ import annotations

import datetime
import re

import pytest

from smimesh.identity import authority, bundles, errors, keys, rotation, spiffe, tlscontexts

from .handshakes import CLIENT, SERVER, connect

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
T0 = datetime.datetime.now(datetime.UTC)


def _leaf(
    ca: authority.CertificateAuthority, identity: spiffe.SpiffeId
) -> tuple[keys.PrivateKey, authority.IssuedCertificate]:
    key = keys.generate_key()
    return key, ca.sign(keys.build_request(key, identity), expected=identity, now=T0)


def _handshake_ok(
    bundle: bundles.TrustBundle,
    server: tuple[keys.PrivateKey, authority.IssuedCertificate],
    client: tuple[keys.PrivateKey, authority.IssuedCertificate],
) -> bool:
    outcome = connect(
        tlscontexts.server_context(key=server[0], certificate=server[1], bundle=bundle),
        tlscontexts.client_context(key=client[0], certificate=client[1], bundle=bundle),
    )
    return outcome.server_saw == CLIENT and outcome.client_saw == SERVER


def test_a_full_rotation_overlaps_both_roots_then_drops_the_old_one() -> None:
    old = authority.create("cluster.local", now=T0)
    new = authority.create("cluster.local", now=T0)
    state = rotation.stable(old)
    old_server = _leaf(state.active, SERVER)

    preparing = rotation.begin(state, new, now=T0, propagation=HOUR)
    assert preparing.phase is rotation.Phase.PREPARING
    assert preparing.active is old, "the old CA keeps signing while the new root propagates"
    assert preparing.bundle.roots == (new.root, old.root)
    assert rotation.advance(preparing, now=T0 + HOUR / 2) is preparing

    draining = rotation.advance(preparing, now=T0 + HOUR)
    assert draining.phase is rotation.Phase.DRAINING
    assert draining.active is new
    new_client = _leaf(draining.active, CLIENT)
    assert draining.bundle.verify_chain(old_server[1].chain, now=T0) == SERVER
    assert draining.bundle.verify_chain(new_client[1].chain, now=T0) == CLIENT
    assert _handshake_ok(draining.bundle, old_server, new_client)
    assert draining.next_step_at == T0 + HOUR + DAY + authority.BACKDATE
    assert rotation.advance(draining, now=T0 + HOUR + DAY) is draining

    done = rotation.advance(draining, now=T0 + HOUR + DAY + authority.BACKDATE)
    assert done.phase is rotation.Phase.STABLE
    assert done.bundle.roots == (new.root,)
    with pytest.raises(bundles.UntrustedChainError, match="does not verify"):
        done.bundle.verify_chain(old_server[1].chain, now=T0)
    assert not _handshake_ok(done.bundle, old_server, new_client)
    assert _handshake_ok(done.bundle, _leaf(done.active, SERVER), new_client)


def test_the_new_root_is_trusted_before_it_signs() -> None:
    old = authority.create("cluster.local", now=T0)
    new = authority.create("cluster.local", now=T0)
    preparing = rotation.begin(rotation.stable(old), new, now=T0)
    early = _leaf(new, CLIENT)
    assert preparing.bundle.verify_chain(early[1].chain, now=T0) == CLIENT
    assert _handshake_ok(preparing.bundle, _leaf(preparing.active, SERVER), early)


@pytest.mark.fast
def test_a_late_advance_still_keeps_the_old_root_for_a_whole_leaf_lifetime() -> None:
    old = authority.create("cluster.local", now=T0)
    preparing = rotation.begin(
        rotation.stable(old), authority.create("cluster.local", now=T0), now=T0, propagation=HOUR
    )
    much_later = T0 + 10 * DAY
    draining = rotation.advance(preparing, now=much_later)
    assert draining.phase is rotation.Phase.DRAINING
    assert old.root in draining.bundle
    assert draining.next_step_at == much_later + DAY + authority.BACKDATE


@pytest.mark.fast
def test_only_one_rotation_at_a_time_and_only_to_a_different_root() -> None:
    old = authority.create("cluster.local", now=T0)
    preparing = rotation.begin(
        rotation.stable(old), authority.create("cluster.local", now=T0), now=T0
    )
    with pytest.raises(errors.InvalidAuthorityError, match="already in progress"):
        rotation.begin(preparing, authority.create("cluster.local", now=T0), now=T0)
    with pytest.raises(errors.InvalidAuthorityError, match="same root"):
        rotation.begin(rotation.stable(old), old.renew_issuer(now=T0), now=T0)
    with pytest.raises(errors.InvalidAuthorityError, match=re.escape("'other.example'")):
        rotation.begin(rotation.stable(old), authority.create("other.example"), now=T0)


@pytest.mark.fast
def test_a_stable_ca_never_moves() -> None:
    state = rotation.stable(authority.create("cluster.local", now=T0))
    assert rotation.advance(state, now=T0 + 1000 * DAY) is state


@pytest.mark.fast
def test_inconsistent_states_cannot_be_built() -> None:
    ca = authority.create("cluster.local", now=T0)
    other = authority.create("cluster.local", now=T0)
    with pytest.raises(errors.InvalidAuthorityError, match="signing root must be in the trust"):
        rotation.MeshCa(ca, bundles.TrustBundle("cluster.local", (other.root,)))
    with pytest.raises(errors.InvalidAuthorityError, match="exactly while PREPARING"):
        rotation.MeshCa(ca, rotation.stable(ca).bundle, rotation.Phase.PREPARING)


@pytest.mark.fast
def test_the_drain_margin_is_the_callers_so_short_lived_meshes_finish_quickly() -> None:
    old = authority.create("cluster.local", now=T0)
    new = authority.create("cluster.local", now=T0)
    second = datetime.timedelta(seconds=1)
    preparing = rotation.begin(rotation.stable(old), new, now=T0, propagation=15 * second)
    draining = rotation.advance(
        preparing, now=T0 + 15 * second, max_leaf_lifetime=15 * second, drain_margin=2 * second
    )
    assert draining.next_step_at == T0 + 32 * second
    assert rotation.advance(draining, now=T0 + 31 * second) is draining
    assert rotation.advance(draining, now=T0 + 32 * second).phase is rotation.Phase.STABLE
