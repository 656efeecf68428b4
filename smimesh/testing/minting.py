"""Short-lived ServiceAccount tokens for the local control plane, signed with its own
service-account key: the apiserver refuses a TokenRequest under 600 s, but a control plane
that owns the signing key can have real tokens of a few seconds, which its TokenReview
accepts until they expire and refuses after, exactly as it treats the tokens it issues.

Fed by `controlplane.ControlPlane.pki` (the key) and the apiserver (the ServiceAccount's and
Pod's UIDs, which the token binds to); used by the fault suite to let a sidecar's token
expire while the config server is down (`tests/e2e/test_faults.py`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client

from smimesh.kube import names
from smimesh.testing import controlplane

LEEWAY = 60.0
"""Seconds the apiserver still accepts a token past its `exp` (go-jose's default leeway, which
kube-apiserver's service-account validator uses). `mint` moves `exp` back by as much, so a
token's lifetime is what the caller asked for."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{path} is not an RSA key")
    return key


def key_id(key: rsa.RSAPrivateKey) -> str:
    """The apiserver's key id: SHA-256 of the public key's DER, base64url without padding."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64(hashlib.sha256(der).digest())


def mint(
    signing_key: Path,
    *,
    namespace: str,
    service_account: str,
    service_account_uid: str,
    pod: tuple[str, str] | None = None,
    audience: str = names.TOKEN_AUDIENCE,
    lifetime: float,
    issuer: str = controlplane.SERVICE_ACCOUNT_ISSUER,
) -> str:
    """A bound token (the ServiceAccount's UID, and the Pod's as `pod=(name, uid)`) that the
    apiserver accepts for `lifetime` seconds from now and refuses after."""
    key = _key(signing_key)
    now = time.time()
    issued = int(now - LEEWAY)  # exp - iat stays the lifetime, as in a TokenRequest token
    claims: dict[str, object] = {
        "aud": [audience],
        "exp": int(now + lifetime - LEEWAY),
        "iat": issued,
        "nbf": issued,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": service_account_uid},
            **({"pod": {"name": pod[0], "uid": pod[1]}} if pod is not None else {}),
        },
    }
    header = {"alg": "RS256", "kid": key_id(key), "typ": "JWT"}
    signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{_b64(signature)}"


def mint_for_pod(
    plane: controlplane.ControlPlane,
    api: client.ApiClient,
    *,
    namespace: str,
    pod: str,
    lifetime: float,
) -> str:
    """A `lifetime`-second token for the Pod's ServiceAccount, bound to the Pod (what the
    kubelet projects into a pod, with the mesh's audience)."""
    core = client.CoreV1Api(api)
    found = core.read_namespaced_pod(pod, namespace)
    account = found.spec.service_account_name if found.spec else None
    if not account or found.metadata is None:
        raise ValueError(f"pod {namespace}/{pod} names no ServiceAccount")
    metadata = core.read_namespaced_service_account(account, namespace).metadata
    if metadata is None:
        raise ValueError(f"ServiceAccount {namespace}/{account} has no metadata")
    return mint(
        plane.pki.sa_private_key,
        namespace=namespace,
        service_account=account,
        service_account_uid=str(metadata.uid),
        pod=(pod, str(found.metadata.uid)),
        lifetime=lifetime,
    )


def review(api: client.ApiClient, token: str, *, audience: str = names.TOKEN_AUDIENCE) -> str:
    """The apiserver's verdict on `token`: the user name, or its error ("" if none given)."""
    status = (
        client.AuthenticationV1Api(api)
        .create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[audience]))
        )
        .status
    )
    if status is not None and status.authenticated and status.user is not None:
        return str(status.user.username)
    return f"refused: {(status.error if status else None) or ''}"
