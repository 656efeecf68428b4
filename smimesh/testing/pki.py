"""The local control plane's PKI: a throwaway CA, the apiserver's serving certificate, an
admin client certificate, the apiserver's client certificate for kubelets, the
service-account signing key pair, and the aggregator's front-proxy CA with the client
certificate the apiserver presents to aggregated APIs. `issue_client` signs more client
certificates with the CA (the real node's kubelet, kube-proxy, controller-manager, scheduler).

Called by `smimesh.testing.controlplane`, which writes the files next to its other state, and
by `smimesh.testing.nodes`.
This is test-cluster plumbing, not the mesh CA (that is `smimesh.identity`).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ControlPlanePki:
    """Paths of the PEM files the apiserver and its clients use."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public_key: Path
    sa_private_key: Path
    front_proxy_ca_cert: Path
    front_proxy_client_cert: Path
    front_proxy_client_key: Path
    kubelet_client_cert: Path
    kubelet_client_key: Path


FRONT_PROXY_CLIENT = "front-proxy-client"
"""The front-proxy client certificate's CN (`--requestheader-allowed-names`)."""


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path, *, hosts: list[str]) -> ControlPlanePki:
    """Generate every credential the control plane needs into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = ControlPlanePki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_public_key=directory / "sa.pub",
        sa_private_key=directory / "sa.key",
        front_proxy_ca_cert=directory / "front-proxy-ca.crt",
        front_proxy_client_cert=directory / "front-proxy-client.crt",
        front_proxy_client_key=directory / "front-proxy-client.key",
        kubelet_client_cert=directory / "apiserver-kubelet-client.crt",
        kubelet_client_key=directory / "apiserver-kubelet-client.key",
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("smimesh-local-control-plane-ca")
    ca = _issue(subject=ca_name, key=ca_key, issuer=ca_name, issuer_key=ca_key, ca=True)
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.ca_key, ca_key)

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving = _issue(
        subject=_name("kube-apiserver"),
        key=serving_key,
        issuer=ca_name,
        issuer_key=ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=sans,
    )
    pki.serving_cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.serving_key, serving_key)

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(
        subject=_name("smimesh-admin", "system:masters"),
        key=admin_key,
        issuer=ca_name,
        issuer_key=ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pki.admin_cert.write_bytes(admin.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.admin_key, admin_key)

    _write_front_proxy(pki)
    # What the apiserver shows a kubelet for logs, exec and port-forward (kubeadm's name).
    issue_client(pki, "kube-apiserver-kubelet-client", "system:masters",
                 cert=pki.kubelet_client_cert, key=pki.kubelet_client_key)  # fmt: skip

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_private_key, sa_key)
    pki.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _write_front_proxy(pki: ControlPlanePki) -> None:
    """A CA of its own for the aggregator's client certificate (as kubeadm does): a client
    certificate of the cluster CA must not be able to assert any user in X-Remote-User."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("smimesh-local-front-proxy-ca")
    ca = _issue(subject=ca_name, key=ca_key, issuer=ca_name, issuer_key=ca_key, ca=True)
    pki.front_proxy_ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(
        subject=_name(FRONT_PROXY_CLIENT),
        key=client_key,
        issuer=ca_name,
        issuer_key=ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pki.front_proxy_client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.front_proxy_client_key, client_key)


def issue_client(
    pki: ControlPlanePki, user: str, group: str | None, *, cert: Path, key: Path
) -> None:
    """A client certificate of the cluster CA for `user` (CN) in `group` (O), written to
    `cert` and `key`."""
    loaded = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key} is not an EC key")
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(
        subject=_name(user, group),
        key=client_key,
        issuer=ca.subject,
        issuer_key=loaded,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(key, client_key)
