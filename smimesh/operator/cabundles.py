"""Point the apiserver at this operator's webhooks: the mesh CA bundle goes into the SMI CRDs'
conversion webhook, into the webhook configurations `smimesh-injector` and
`smimesh-validator`, and into APIService `v1alpha1.metrics.smi-spec.io` (the manifests ship
them without a caBundle). The APIService always names the operator Service, local mode or not.

Run by `webhooking.WebhookServer.run` at start, on every replica: the patches are idempotent
(an object already current is not written, so replicas do not fight and CRDs are not touched
needlessly: every CRD write makes the apiserver rebuild that resource's handler). In local
mode (`--webhook-url`, for a control plane without Service routing, such as the test one) the
clientConfig becomes `url: <webhook-url>/<path>` instead of the Service reference, and on a
clean stop `leave_local_mode` points it back (else the manifests no longer apply: URL and
Service reference would both be set). The planning is pure (`crd_patch`, `webhook_patch`,
`service_patch`); `CaBundleInjector` and `leave_local_mode` do the I/O.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import urllib3
from kubernetes import client

from smimesh._aio import backoff
from smimesh.kube import names
from smimesh.smi import kinds

log = logging.getLogger(__name__)

CONVERT_PATH = "/convert"
VALIDATE_PATH = "/validate"
MUTATE_PATH = "/mutate"

APISERVICE = "v1alpha1.metrics.smi-spec.io"
RELEASE_TIMEOUT = 5.0
"""Seconds a stopping operator spends pointing the webhooks back at the Service."""

Outcome = Literal["patched", "current", "missing", "not-webhook"]


def conversion_crds() -> tuple[str, ...]:
    """The SMI CRDs that convert through our webhook (kinds with more than one version)."""
    return tuple(info.crd_name for info in kinds.KINDS if info.crd and len(info.versions) > 1)


@dataclass(frozen=True)
class Endpoint:
    """How the apiserver reaches us: the CA bundle to trust, and a base URL in local mode."""

    ca_bundle: bytes
    url: str | None = None

    @property
    def encoded_bundle(self) -> str:
        return base64.b64encode(self.ca_bundle).decode()

    def client_config(self, current: Mapping[str, Any], path: str) -> dict[str, Any]:
        """The clientConfig wanted in place of `current`: the Service reference (or whatever
        the user put there) is kept in cluster mode; local mode replaces it with our URL."""
        if self.url is None:
            return {**current, "caBundle": self.encoded_bundle}
        return {"url": self.url.rstrip("/") + path, "caBundle": self.encoded_bundle}


def crd_patch(crd: Mapping[str, Any], endpoint: Endpoint) -> dict[str, Any] | None:
    """A JSON merge patch that makes `crd`'s conversion webhook ours; None if it already is.

    A CRD whose strategy is not Webhook is left alone (someone chose `None` on purpose).
    """
    conversion = (crd.get("spec") or {}).get("conversion") or {}
    if conversion.get("strategy") != "Webhook":
        return None
    current = (conversion.get("webhook") or {}).get("clientConfig") or {}
    wanted = endpoint.client_config(current, CONVERT_PATH)
    if wanted == current:
        return None
    removed = {key: None for key in current if key not in wanted}
    return {"spec": {"conversion": {"webhook": {"clientConfig": {**wanted, **removed}}}}}


def webhook_patch(
    configuration: Mapping[str, Any], endpoint: Endpoint, path: str
) -> list[dict[str, Any]] | None:
    """A JSON Patch that makes every webhook of `configuration` call us; None if all do.

    Each replacement is guarded by a `test` of the webhook's name at its index, so a
    configuration changed since it was read is refused rather than patched in the wrong place.
    """
    operations: list[dict[str, Any]] = []
    for number, webhook in enumerate(configuration.get("webhooks") or []):
        current = webhook.get("clientConfig") or {}
        wanted = endpoint.client_config(current, path)
        if wanted != current:
            operations += [
                {"op": "test", "path": f"/webhooks/{number}/name", "value": webhook.get("name")},
                {"op": "add", "path": f"/webhooks/{number}/clientConfig", "value": wanted},
            ]
    return operations or None


def apiservice_patch(apiservice: Mapping[str, Any], endpoint: Endpoint) -> dict[str, Any] | None:
    """A JSON merge patch that makes the APIService trust our CA; None if it already does."""
    spec = apiservice.get("spec") or {}
    if spec.get("caBundle") == endpoint.encoded_bundle and not spec.get("insecureSkipTLSVerify"):
        return None
    return {"spec": {"caBundle": endpoint.encoded_bundle, "insecureSkipTLSVerify": None}}


def _service(namespace: str, path: str) -> dict[str, Any]:
    return {"namespace": namespace, "name": names.OPERATOR_SERVICE, "path": path, "port": 443}


def service_patch(crd: Mapping[str, Any], namespace: str) -> dict[str, Any] | None:
    """A JSON merge patch that points `crd`'s conversion webhook back at the operator Service
    (leaving local mode); None if it has no URL.

    Needed before the manifests are applied again: the URL (ours) and the Service reference
    (the manifests') are owned by different field managers, so server-side apply would keep
    both, which the apiserver refuses ("exactly one of url or service").
    """
    conversion = (crd.get("spec") or {}).get("conversion") or {}
    current = (conversion.get("webhook") or {}).get("clientConfig") or {}
    if conversion.get("strategy") != "Webhook" or "url" not in current:
        return None
    wanted = {"url": None, "service": _service(namespace, CONVERT_PATH)}
    return {"spec": {"conversion": {"webhook": {"clientConfig": wanted}}}}


def webhook_service_patch(
    configuration: Mapping[str, Any], namespace: str, path: str
) -> list[dict[str, Any]] | None:
    """`service_patch` for a webhook configuration: a JSON Patch, None if no webhook has a URL."""
    operations: list[dict[str, Any]] = []
    for number, webhook in enumerate(configuration.get("webhooks") or []):
        current = webhook.get("clientConfig") or {}
        if "url" in current:
            wanted = {key: value for key, value in current.items() if key != "url"}
            operations += [
                {"op": "test", "path": f"/webhooks/{number}/name", "value": webhook.get("name")},
                {
                    "op": "add",
                    "path": f"/webhooks/{number}/clientConfig",
                    "value": {**wanted, "service": _service(namespace, path)},
                },
            ]
    return operations or None


def _read(api: client.ApiClient, read: Callable[[str], Any], name: str) -> dict[str, Any] | None:
    """The object as JSON (camelCase), or None if it does not exist."""
    try:
        found = read(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    serialized: dict[str, Any] = api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
    return serialized


def leave_local_mode(api: client.ApiClient, namespace: str) -> list[str]:
    """Point the converting CRDs and both webhook configurations back at the operator
    Service (see `service_patch`), e.g. once a local-mode operator has stopped, so that the
    manifests apply again; returns the objects changed."""
    extensions = client.ApiextensionsV1Api(api)
    changed = []
    for name in conversion_crds():
        crd = _read(api, extensions.read_custom_resource_definition, name)
        patch = None if crd is None else service_patch(crd, namespace)
        if patch is not None:
            extensions.patch_custom_resource_definition(
                name, patch, _content_type="application/merge-patch+json"
            )
            changed.append(name)
    registration = client.AdmissionregistrationV1Api(api)
    for name, read, patch_with, path in (
        (
            names.INJECTOR_WEBHOOK,
            registration.read_mutating_webhook_configuration,
            registration.patch_mutating_webhook_configuration,
            MUTATE_PATH,
        ),
        (
            names.VALIDATOR_WEBHOOK,
            registration.read_validating_webhook_configuration,
            registration.patch_validating_webhook_configuration,
            VALIDATE_PATH,
        ),
    ):
        configuration = _read(api, read, name)
        operations = (
            None if configuration is None else webhook_service_patch(configuration, namespace, path)
        )
        if operations is not None:
            patch_with(name, operations, _content_type="application/json-patch+json")
            changed.append(name)
    return changed


@dataclass
class CaBundleInjector:
    """Reads the CRDs and webhook configurations and patches those that are not current."""

    api: client.ApiClient
    endpoint: Endpoint
    namespace: str = names.MESH_NAMESPACE

    def _read(self, read: Callable[[str], Any], name: str) -> dict[str, Any] | None:
        return _read(self.api, read, name)

    def ensure_crd(self, name: str) -> Outcome:
        extensions = client.ApiextensionsV1Api(self.api)
        crd = self._read(extensions.read_custom_resource_definition, name)
        if crd is None:
            return "missing"
        if ((crd.get("spec") or {}).get("conversion") or {}).get("strategy") != "Webhook":
            return "not-webhook"
        patch = crd_patch(crd, self.endpoint)
        if patch is None:
            return "current"
        extensions.patch_custom_resource_definition(
            name, patch, _content_type="application/merge-patch+json"
        )
        return "patched"

    def ensure_webhooks(self, kind: Literal["mutating", "validating"], name: str) -> Outcome:
        registration = client.AdmissionregistrationV1Api(self.api)
        read: Callable[[str], Any]
        patch_with: Callable[..., Any]
        if kind == "mutating":
            read, patch_with, path = (
                registration.read_mutating_webhook_configuration,
                registration.patch_mutating_webhook_configuration,
                MUTATE_PATH,
            )
        else:
            read, patch_with, path = (
                registration.read_validating_webhook_configuration,
                registration.patch_validating_webhook_configuration,
                VALIDATE_PATH,
            )
        configuration = self._read(read, name)
        if configuration is None:
            return "missing"
        patch = webhook_patch(configuration, self.endpoint, path)
        if patch is None:
            return "current"
        patch_with(name, patch, _content_type="application/json-patch+json")
        return "patched"

    def ensure_apiservice(self) -> Outcome:
        registration = client.ApiregistrationV1Api(self.api)
        apiservice = self._read(registration.read_api_service, APISERVICE)
        if apiservice is None:
            return "missing"
        patch = apiservice_patch(apiservice, self.endpoint)
        if patch is None:
            return "current"
        registration.patch_api_service(
            APISERVICE, patch, _content_type="application/merge-patch+json"
        )
        return "patched"

    def ensure(self) -> dict[str, Outcome]:
        """Make every object current; returns what happened to each (by object name)."""
        outcomes: dict[str, Outcome] = {name: self.ensure_crd(name) for name in conversion_crds()}
        outcomes[names.INJECTOR_WEBHOOK] = self.ensure_webhooks("mutating", names.INJECTOR_WEBHOOK)
        outcomes[names.VALIDATOR_WEBHOOK] = self.ensure_webhooks(
            "validating", names.VALIDATOR_WEBHOOK
        )
        outcomes[APISERVICE] = self.ensure_apiservice()
        return outcomes

    async def run(self) -> dict[str, Outcome]:
        """`ensure` in a worker thread, retried with backoff until the apiserver lets it
        through (a missing object is not an error: the webhooks were not installed)."""
        delays = backoff.Backoff(initial=0.5, maximum=30.0)
        while True:
            try:
                outcomes = await asyncio.to_thread(self.ensure)
            except client.ApiException as exc:
                log.warning("webhook CA bundles not in place yet: %s %s", exc.status, exc.reason)
                await delays.sleep()
                continue
            except urllib3.exceptions.HTTPError as exc:
                log.warning("webhook CA bundles not in place yet: %s", exc)
                await delays.sleep()
                continue
            missing = sorted(name for name, outcome in outcomes.items() if outcome == "missing")
            if missing:
                log.warning("not installed, so not served through the apiserver: %s", missing)
            log.info(
                "webhook CA bundles in place (%s)",
                ", ".join(f"{name}: {outcome}" for name, outcome in sorted(outcomes.items())),
            )
            return outcomes

    async def release(self) -> None:
        """On a clean stop in local mode, point everything back at the operator Service
        (`leave_local_mode`), so that the manifests apply again. A replica that is still
        running keeps serving only once it restarts: local mode is for one operator."""
        if self.endpoint.url is None:
            return
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                changed = await asyncio.to_thread(leave_local_mode, self.api, self.namespace)
        except (TimeoutError, client.ApiException, urllib3.exceptions.HTTPError) as exc:
            log.warning("could not point the webhooks back at the Service: %s", exc)
        else:
            log.info("webhooks point at the operator Service again: %s", changed)
