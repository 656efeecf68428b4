"""`kubectl smi ca status|rotate`: where the mesh CA stands, and asking for a root rotation.

Registered by `smimesh.cli.main`. Reads the CA Secret `smimesh-ca` in the mesh namespace (so it
needs `get` on Secrets there) and shows, from its certificates and rotation fields only (never
a key), the phase, every trusted root with its expiry, the issuing CA's expiry and the next
step's time. `rotate` sets the request annotation the operator's maintenance loop acts on once
(`smimesh.operator.rotating`), with a patch guarded by the Secret's resourceVersion.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer
from cryptography import x509
from kubernetes import client

from smimesh.cli import connecting, rendering
from smimesh.identity import bundles, errors, keys, secretdata
from smimesh.kube import names
from smimesh.operator import authorities

app = typer.Typer(
    help="The mesh CA: its state, and root rotation.", no_args_is_help=True, add_completion=False
)

MeshNamespace = Annotated[
    str,
    typer.Option("--namespace", "-n", help="The mesh namespace, where Secret smimesh-ca lives."),
]


def _read(api: client.ApiClient, namespace: str) -> client.V1Secret:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(
            names.CA_SECRET, namespace, _request_timeout=connecting.REQUEST_TIMEOUT
        )
    except client.ApiException as exc:
        if exc.status == 404:
            connecting.fail(
                f"no Secret {names.CA_SECRET} in namespace {namespace!r}: the operator "
                "creates it on first start (is smimesh installed and running?)",
                connecting.FAILED,
            )
        raise


def _certificates(data: dict[str, str], key: str) -> tuple[x509.Certificate, ...]:
    text = data.get(key, "").strip()
    if not text:
        return ()
    try:
        return keys.certificates_from_pem(text.encode())
    except (ValueError, errors.InvalidAuthorityError) as exc:
        connecting.fail(f"the CA Secret's {key} is not PEM: {exc}", connecting.FAILED)


def _certificate(certificate: x509.Certificate, role: str) -> dict[str, str]:
    return {
        "role": role,
        "subject": certificate.subject.rfc4514_string(),
        "fingerprint": bundles.fingerprint(certificate),
        "notAfter": certificate.not_valid_after_utc.isoformat(),
    }


def describe(secret: client.V1Secret) -> dict[str, Any]:
    """The CA as plain data: phase, roots (newest first), issuer, next step, requests."""
    data = authorities.decode(secret.data)
    roots = _certificates(data, secretdata.CA_CERT)
    chain = _certificates(data, secretdata.TLS_CERT)
    pending_roots = _certificates(data, secretdata.PENDING_ROOT_CERT)
    if not roots or not chain:
        connecting.fail("the CA Secret holds no ca.crt or tls.crt", connecting.FAILED)
    phase = data.get(secretdata.PHASE, "stable")
    signing_root = chain[-1] if chain[-1] in roots else None

    def role(root: x509.Certificate) -> str:
        if root in pending_roots:
            return "trusted, signs next"
        if root == signing_root or (signing_root is None and len(roots) == 1):
            return "trusted, signs"
        return "trusted, being retired" if phase != "stable" else "trusted"

    annotations = (secret.metadata.annotations if secret.metadata else None) or {}
    return {
        "phase": phase,
        "nextStepAt": data.get(secretdata.NEXT_STEP_AT),
        "roots": [_certificate(root, role(root)) for root in roots],
        "issuer": _certificate(chain[0], "issuing CA"),
        "rootKeyHeld": bool(data.get(secretdata.ROOT_KEY)),
        "rotationRequested": annotations.get(names.ROTATE_REQUESTED_ANNOTATION),
        "rotationHandled": annotations.get(names.ROTATE_HANDLED_ANNOTATION),
    }


def _left(when: str, *, past: str = "EXPIRED") -> str:
    left = datetime.datetime.fromisoformat(when) - datetime.datetime.now(datetime.UTC)
    if left.total_seconds() <= 0:
        return past
    days, seconds = left.days, int(left.seconds)
    if days:
        return f"in {days}d{seconds // 3600}h"
    return f"in {seconds // 3600}h{seconds % 3600 // 60}m" if seconds >= 3600 else f"in {seconds}s"


def status(
    namespace: MeshNamespace = names.MESH_NAMESPACE,
    output: rendering.Output = rendering.Format.table,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Show the mesh CA: rotation phase, every trusted root, the issuing CA, the next step.

    Phases: stable (one root), preparing (a new root is trusted, the old one still signs),
    draining (the new root signs; the old one is trusted until its last certificates
    expire). Read from Secret smimesh-ca (needs `get` on Secrets in the mesh namespace);
    no private key is shown.
    Exit code 0 when shown, 1 if there is no CA Secret (or it is unreadable), 2 if the
    cluster cannot be reached.

    Example: kubectl smi ca status -o yaml
    """
    with connecting.api_client(kubeconfig, context) as api:
        connecting.require_reachable(api)
        described = describe(_read(api, namespace))
    if output is not rendering.Format.table:
        rendering.documents(described, output)
        return
    step = described["nextStepAt"]
    typer.echo(
        f"phase: {described['phase']}"
        + (f" (next step {_left(step, past='due')}, {step})" if step else "")
    )
    rows = [
        ["root", item["role"], item["subject"], item["notAfter"], _left(item["notAfter"])]
        for item in described["roots"]
    ]
    issuer = described["issuer"]
    rows.append(
        [
            "issuer",
            "signs workloads",
            issuer["subject"],
            issuer["notAfter"],
            _left(issuer["notAfter"]),
        ]
    )
    rendering.table(["kind", "role", "subject", "not after", "expires"], rows)
    if not described["rootKeyHeld"]:
        typer.echo(
            "note: the root key is not held by smimesh; renew the issuing CA with your own tooling",
            err=True,
        )


def rotate(
    namespace: MeshNamespace = names.MESH_NAMESPACE,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Ask the operator to rotate the mesh's root CA, without dropping a connection.

    Sets annotation smimesh.dev/rotate-requested-at on Secret smimesh-ca; the leading
    operator acts on it once, at its next look (--ca-period, 30 s by default): a new root is
    trusted at once (preparing, one workload-certificate lifetime, while every sidecar picks
    up the new bundle), then signs (draining, until the last certificates under the old root
    expired), then the old root is dropped (stable). Follow it with `kubectl smi ca status`.
    Exit code 0 when requested, 1 if there is no CA Secret or a rotation is already in
    progress, 2 if the cluster cannot be reached.

    Example: kubectl smi ca rotate && kubectl smi ca status
    """
    with connecting.api_client(kubeconfig, context) as api:
        connecting.require_reachable(api)
        secret = _read(api, namespace)
        described = describe(secret)
        if described["phase"] != "stable":
            connecting.fail(
                f"a rotation is already in progress ({described['phase']}, next step at "
                f"{described['nextStepAt']}); see `kubectl smi ca status`",
                connecting.FAILED,
            )
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
        patch = {
            "metadata": {
                "resourceVersion": secret.metadata.resource_version if secret.metadata else None,
                "annotations": {names.ROTATE_REQUESTED_ANNOTATION: now.replace("+00:00", "Z")},
            }
        }
        try:
            client.CoreV1Api(api).patch_namespaced_secret(
                names.CA_SECRET,
                namespace,
                patch,
                _request_timeout=connecting.REQUEST_TIMEOUT,
            )
        except client.ApiException as exc:
            if exc.status == 409:
                connecting.fail(
                    "the CA Secret changed meanwhile; run the command again", connecting.FAILED
                )
            raise
    typer.echo(
        f"Rotation of the mesh root requested ({now}).\n"
        "The operator will, at its next look at the CA (every 30 s by default):\n"
        "  1. preparing: trust a new root beside the current one, which keeps signing for one\n"
        "     workload-certificate lifetime while every sidecar picks up the new bundle;\n"
        "  2. draining: sign with the new root; the old one stays trusted until the last\n"
        "     certificates it signed have expired;\n"
        "  3. stable: trust only the new root.\n"
        "Follow it with:  kubectl smi ca status\n"
        f"           and  kubectl get events -n {namespace} "
        f"--field-selector involvedObject.name={names.CA_SECRET}"
    )


def register(main: typer.Typer) -> None:
    app.command("status")(connecting.guarded(status))
    app.command("rotate")(connecting.guarded(rotate))
    main.add_typer(app, name="ca")
