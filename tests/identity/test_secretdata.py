"""The mesh CA survives a round trip through Secret data, and a cert-manager CA loads as is."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from smimesh.identity import authority, errors, keys, rotation, secretdata, spiffe

pytestmark = pytest.mark.fast

T0 = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
WEB = spiffe.SpiffeId("cluster.local", "shop", "web")


def _cert_manager_ca() -> dict[str, str]:
    """What cert-manager writes for a self-signed CA Certificate with its default RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesh-ca")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - datetime.timedelta(hours=1))
        .not_valid_after(T0 + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, True, True, False, False), True
        )
        .sign(key, hashes.SHA256())
    )
    pem = keys.certificates_to_pem((root,)).decode()
    return {"tls.crt": pem, "tls.key": keys.key_to_pem(key).decode(), "ca.crt": pem}


def test_a_stable_ca_round_trips_through_secret_data() -> None:
    state = rotation.stable(authority.create("cluster.local", now=T0))
    data = secretdata.dump(state)
    assert set(data) == {"ca.crt", "tls.crt", "tls.key", "root.key"}
    assert all(value.startswith("-----BEGIN") for value in data.values())
    loaded = secretdata.load(data, trust_domain="cluster.local", now=T0)
    assert secretdata.dump(loaded) == data
    assert (loaded.active.root, loaded.active.issuer) == (state.active.root, state.active.issuer)
    assert loaded.bundle == state.bundle


def test_a_rotation_in_progress_round_trips_through_secret_data() -> None:
    preparing = rotation.begin(
        rotation.stable(authority.create("cluster.local", now=T0)),
        authority.create("cluster.local", now=T0),
        now=T0,
    )
    data = secretdata.dump(preparing)
    assert data["rotation.phase"] == "preparing"
    loaded = secretdata.load(data, trust_domain="cluster.local", now=T0)
    assert secretdata.dump(loaded) == data
    assert (loaded.phase, loaded.next_step_at) == (preparing.phase, preparing.next_step_at)
    assert loaded.pending is not None
    assert preparing.pending is not None
    assert loaded.pending.issuer == preparing.pending.issuer
    draining = secretdata.dump(rotation.advance(loaded, now=T0 + datetime.timedelta(days=1)))
    assert secretdata.dump(secretdata.load(draining, trust_domain="cluster.local")) == draining


def test_a_cert_manager_ca_signs_workloads_without_a_root_key() -> None:
    state = secretdata.load(_cert_manager_ca(), trust_domain="cluster.local", now=T0)
    assert state.active.root_key is None
    assert state.active.chain == (), "a root signing directly is not sent along with leaves"
    issued = state.active.sign(keys.build_request(keys.generate_key(), WEB), expected=WEB)
    assert issued.chain == (issued.certificate,)
    assert state.bundle.verify_chain(issued.chain) == WEB


def test_a_cert_manager_intermediate_with_its_chain_loads() -> None:
    ours = authority.create("cluster.local", now=T0)
    data = {
        "tls.crt": keys.certificates_to_pem((ours.issuer, ours.root)).decode(),
        "tls.key": keys.key_to_pem(ours.issuer_key).decode(),
        "ca.crt": keys.certificates_to_pem((ours.root,)).decode(),
    }
    state = secretdata.load(data, trust_domain="cluster.local", now=T0)
    assert state.active.chain == (ours.issuer,)
    assert state.active.root == ours.root


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"tls.key": ""}, "has no 'tls.key'"),
        ({"ca.crt": ""}, "has no 'ca.crt'"),
        ({"tls.key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "key"),
        ({"rotation.phase": "sideways"}, "rotation state is unreadable"),
    ],
)
def test_incomplete_secret_data_is_refused_with_the_missing_piece(
    change: dict[str, str], says: str
) -> None:
    data = secretdata.dump(rotation.stable(authority.create("cluster.local", now=T0))) | change
    with pytest.raises(errors.InvalidAuthorityError, match=says):
        secretdata.load(data, trust_domain="cluster.local", now=T0)


def test_a_key_of_another_certificate_is_refused() -> None:
    data = secretdata.dump(rotation.stable(authority.create("cluster.local", now=T0)))
    data["tls.key"] = keys.key_to_pem(keys.generate_key()).decode()
    with pytest.raises(errors.InvalidAuthorityError, match=re.escape("does not belong to tls.crt")):
        secretdata.load(data, trust_domain="cluster.local", now=T0)


def test_a_leaf_certificate_is_not_accepted_as_a_ca() -> None:
    ca = authority.create("cluster.local", now=T0)
    key = keys.generate_key()
    leaf = ca.sign(keys.build_request(key, WEB), expected=WEB, now=T0)
    data = {
        "tls.crt": leaf.chain_pem().decode(),
        "tls.key": keys.key_to_pem(key).decode(),
        "ca.crt": keys.certificates_to_pem((ca.root,)).decode(),
    }
    with pytest.raises(errors.InvalidAuthorityError, match="is not a CA certificate"):
        secretdata.load(data, trust_domain="cluster.local", now=T0)


def test_a_ca_not_under_any_trusted_root_is_refused() -> None:
    data = secretdata.dump(rotation.stable(authority.create("cluster.local", now=T0)))
    stranger = authority.create("cluster.local", now=T0)
    data["ca.crt"] = keys.certificates_to_pem((stranger.root,)).decode()
    with pytest.raises(errors.InvalidAuthorityError, match="does not chain to any root"):
        secretdata.load(data, trust_domain="cluster.local", now=T0)


def test_an_expired_ca_is_refused() -> None:
    data = secretdata.dump(rotation.stable(authority.create("cluster.local", now=T0)))
    with pytest.raises(errors.InvalidAuthorityError, match="not now"):
        secretdata.load(data, trust_domain="cluster.local", now=T0 + datetime.timedelta(days=400))
