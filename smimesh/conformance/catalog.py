"""smimesh's checks, grouped as `kubectl smi check` shows them: the Kubernetes API, (before
installing) permissions, the SMI CRDs, the operator, the webhooks, the proxies, SMI objects.

Built on `smimesh.conformance.checks`; run by `kubectl smi check` and, before its scenarios,
by the conformance suite. Reads only the Kubernetes API: CRDs, the operator's Lease,
Deployment and Service, webhook configurations, meshed pods, and the status conditions the
operator writes on SMI objects.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes import client

from smimesh.conformance.checks import (
    Check,
    CheckContext,
    Group,
    Verdict,
    fail,
    ok,
    skip,
    warn,
)
from smimesh.kube import names
from smimesh.smi import kinds

OPERATOR = names.OPERATOR_SERVICE  # the Deployment, Service and Lease share this name
MIN_KUBERNETES = (1, 29)  # native sidecars (restartable init containers)
PART_OF = "app.kubernetes.io/part-of=smimesh"
SMI_CRDS = tuple(info for info in kinds.KINDS if info.crd)


def _listed(names_: list[str], limit: int = 5) -> str:
    return ", ".join(names_[:limit]) + (
        f" and {len(names_) - limit} more" if len(names_) > limit else ""
    )


# --- kubernetes-api ---------------------------------------------------------------------


def _version(context: CheckContext) -> Any:
    return context.remember(
        "version", lambda: client.VersionApi(context.api).get_code(_request_timeout=context.timeout)
    )


def api_reachable(context: CheckContext) -> Verdict:
    info = _version(context)
    return ok(f"{context.api.configuration.host}, Kubernetes {info.git_version}")


def version_supported(context: CheckContext) -> Verdict:
    info = _version(context)
    try:
        found = (int(info.major), int("".join(ch for ch in info.minor if ch.isdigit())))
    except (TypeError, ValueError):
        return warn(f"cannot read the version {info.git_version!r}")
    if found < MIN_KUBERNETES:
        return warn(
            f"Kubernetes {info.git_version} has no native sidecars; use --no-native-sidecars"
        )
    return ok(str(info.git_version))


KUBERNETES_API = Group(
    "kubernetes-api",
    (
        Check(
            "can reach the Kubernetes API",
            "check --kubeconfig/--context and that the apiserver is up",
            api_reachable,
            fatal=True,
        ),
        Check(
            f"Kubernetes is at least {MIN_KUBERNETES[0]}.{MIN_KUBERNETES[1]}",
            "injection falls back to a proxy container before the app's",
            version_supported,
        ),
    ),
)


# --- pre-installation -------------------------------------------------------------------


def can(verb: str, group: str, resource: str, *, namespaced: bool = False) -> Check:
    where = " in the mesh namespace" if namespaced else ""

    def run(context: CheckContext) -> Verdict:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb,
                    group=group,
                    resource=resource,
                    namespace=context.namespace if namespaced else None,
                )
            )
        )
        answer = client.AuthorizationV1Api(context.api).create_self_subject_access_review(
            review, _request_timeout=context.timeout
        )
        if answer.status is not None and answer.status.allowed:
            return ok()
        return fail((answer.status.reason if answer.status else None) or "not allowed")

    return Check(
        f"can {verb} {resource}{where}",
        "installing needs cluster-admin rights (ask your cluster administrator)",
        run,
    )


PRE_INSTALL = Group(
    "pre-installation",
    (
        can("create", "", "namespaces"),
        can("create", "apiextensions.k8s.io", "customresourcedefinitions"),
        can("create", "rbac.authorization.k8s.io", "clusterroles"),
        can("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
        can("create", "apps", "deployments", namespaced=True),
        can("create", "", "services", namespaced=True),
        can("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ),
)


# --- smimesh-crds -----------------------------------------------------------------------


def _crd(context: CheckContext, name: str) -> Any:
    def fetch() -> Any:
        try:
            return client.ApiextensionsV1Api(context.api).read_custom_resource_definition(
                name, _request_timeout=context.timeout
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return context.remember(f"crd/{name}", fetch)


def crd_served(info: kinds.KindInfo) -> Check:
    def run(context: CheckContext) -> Verdict:
        crd = _crd(context, info.crd_name)
        if crd is None:
            return fail("not installed")
        served = {v.name for v in crd.spec.versions if v.served}
        missing = [v for v in info.versions if v not in served]
        if missing:
            return fail(f"does not serve {', '.join(missing)}")
        established = any(
            c.type == "Established" and c.status == "True"
            for c in (crd.status.conditions if crd.status else None) or []
        )
        if not established:
            return fail("not Established yet")
        storage = next((v.name for v in crd.spec.versions if v.storage), "?")
        return ok(f"serves {', '.join(info.versions)}; stores {storage}")

    return Check(
        f"CRD {info.crd_name} is installed and serves every version",
        "run `kubectl smi install`",
        run,
    )


def crds_convert(context: CheckContext) -> Verdict:
    crds = [c for info in SMI_CRDS if (c := _crd(context, info.crd_name)) is not None]
    if not crds:
        return skip("no SMI CRDs installed")
    without: list[str] = []
    unconverted: list[str] = []
    for crd in crds:
        conversion = crd.spec.conversion
        if conversion is None or conversion.strategy != "Webhook":
            unconverted.append(crd.metadata.name)
        elif not (conversion.webhook and conversion.webhook.client_config.ca_bundle):
            without.append(crd.metadata.name)
    if unconverted:
        return warn(f"no conversion webhook (strategy None): {_listed(unconverted)}")
    if without:
        return warn(
            f"conversion webhook without a caBundle: {_listed(without)}; only the stored "
            "version can be read and written"
        )
    return ok("every SMI CRD converts through the operator's webhook")


CRDS = Group(
    "smimesh-crds",
    (
        *(crd_served(info) for info in SMI_CRDS),
        Check(
            "SMI CRDs convert between versions",
            "the operator serves /convert and sets the caBundle once its webhooks run",
            crds_convert,
        ),
    ),
)


# --- smimesh-operator -------------------------------------------------------------------


def _lease(context: CheckContext) -> Any:
    def fetch() -> Any:
        try:
            return client.CoordinationV1Api(context.api).read_namespaced_lease(
                OPERATOR, context.namespace, _request_timeout=context.timeout
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return context.remember("lease", fetch)


def _lease_age(context: CheckContext) -> tuple[str | None, float | None, float]:
    """(holder, seconds since the last renewal, lease duration in seconds)."""
    lease = _lease(context)
    spec = lease.spec if lease is not None else None
    if spec is None or not spec.holder_identity:
        return None, None, 0.0
    renewed: datetime.datetime | None = spec.renew_time or spec.acquire_time
    age = (context.now() - renewed).total_seconds() if renewed else None
    return spec.holder_identity, age, float(spec.lease_duration_seconds or 15)


def namespace_exists(context: CheckContext) -> Verdict:
    try:
        client.CoreV1Api(context.api).read_namespace(
            context.namespace, _request_timeout=context.timeout
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return fail(f"namespace {context.namespace} does not exist")
        raise
    return ok(context.namespace)


def lease_held(context: CheckContext) -> Verdict:
    if _lease(context) is None:
        return fail(f"no Lease {context.namespace}/{OPERATOR}: no operator has run")
    holder, _, _ = _lease_age(context)
    if holder is None:
        return fail("the Lease has no holder: the last operator stopped")
    return ok(f"held by {holder}")


def lease_fresh(context: CheckContext) -> Verdict:
    holder, age, duration = _lease_age(context)
    if holder is None or age is None:
        return skip("no holder")
    if age > duration:
        return fail(f"{holder} last renewed it {age:.0f}s ago (it expires after {duration:.0f}s)")
    return ok(f"renewed {max(age, 0):.0f}s ago")


def _deployment(context: CheckContext) -> Any:
    def fetch() -> Any:
        try:
            return client.AppsV1Api(context.api).read_namespaced_deployment(
                OPERATOR, context.namespace, _request_timeout=context.timeout
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return context.remember("deployment", fetch)


def deployment_ready(context: CheckContext) -> Verdict:
    deployment = _deployment(context)
    if deployment is None:
        return skip("no Deployment: the operator runs outside the cluster")
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    ready = (deployment.status.ready_replicas if deployment.status else None) or 0
    if ready >= 1:
        return ok(f"{ready}/{wanted} replicas ready")
    holder, age, duration = _lease_age(context)
    if holder is not None and age is not None and age <= duration:
        return warn(f"0/{wanted} replicas ready; the Lease holder {holder} runs elsewhere")
    return fail(f"0/{wanted} replicas ready")


def service_present(context: CheckContext) -> Verdict:
    if _deployment(context) is None:
        return skip("no Deployment: the operator runs outside the cluster")
    try:
        service = client.CoreV1Api(context.api).read_namespaced_service(
            OPERATOR, context.namespace, _request_timeout=context.timeout
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return fail(f"no Service {context.namespace}/{OPERATOR}")
        raise
    ports = sorted(
        f"{p.name or ''}:{p.port}" for p in (service.spec.ports if service.spec else None) or []
    )
    return ok(", ".join(ports))


OPERATOR_GROUP = Group(
    "smimesh-operator",
    (
        Check("the mesh namespace exists", "run `kubectl smi install`", namespace_exists),
        Check(
            "an operator holds the leader Lease",
            "start the operator: `kubectl smi install` (or `python -m smimesh.operator`)",
            lease_held,
        ),
        Check(
            "the leader renews its Lease",
            "the leader stopped or cannot reach the API; see its logs",
            lease_fresh,
        ),
        Check(
            "the operator Deployment is ready",
            f"kubectl -n <namespace> describe deployment {OPERATOR}",
            deployment_ready,
        ),
        Check(
            "the operator Service exists (webhooks :443, config :15010)",
            "run `kubectl smi install`",
            service_present,
        ),
    ),
)


# --- smimesh-webhooks -------------------------------------------------------------------


def _webhook_configurations(context: CheckContext) -> list[tuple[str, Any]]:
    def fetch() -> list[tuple[str, Any]]:
        registration = client.AdmissionregistrationV1Api(context.api)
        mutating = registration.list_mutating_webhook_configuration(
            label_selector=PART_OF, _request_timeout=context.timeout
        ).items
        validating = registration.list_validating_webhook_configuration(
            label_selector=PART_OF, _request_timeout=context.timeout
        ).items
        return [("mutating", c) for c in mutating] + [("validating", c) for c in validating]

    found: list[tuple[str, Any]] = context.remember("webhooks", fetch)
    return found


def webhooks_installed(context: CheckContext) -> Verdict:
    found = _webhook_configurations(context)
    if not found:
        return warn("none installed: no automatic injection, no admission validation")
    return ok(_listed([f"{kind} {c.metadata.name}" for kind, c in found]))


def webhooks_trusted(context: CheckContext) -> Verdict:
    found = _webhook_configurations(context)
    if not found:
        return skip("no webhook configurations")
    missing = [
        f"{c.metadata.name}/{hook.name}"
        for _, c in found
        for hook in c.webhooks or []
        if not hook.client_config.ca_bundle
    ]
    if missing:
        return fail(f"no caBundle on {_listed(missing)}")
    return ok()


WEBHOOKS = Group(
    "smimesh-webhooks",
    (
        Check(
            "webhook configurations are installed",
            "the webhook configurations come with the operator's webhooks",
            webhooks_installed,
        ),
        Check(
            "every webhook has a caBundle",
            "the operator writes the caBundle when it starts; restart it",
            webhooks_trusted,
        ),
    ),
)


# --- smimesh-proxies --------------------------------------------------------------------


def proxies_ready(context: CheckContext) -> Verdict:
    pods = client.CoreV1Api(context.api).list_pod_for_all_namespaces(
        _request_timeout=context.timeout
    )
    meshed = [
        (p, p.metadata or client.V1ObjectMeta())
        for p in pods.items
        if p.metadata and (p.metadata.annotations or {}).get(names.INJECTED_ANNOTATION)
    ]
    if not meshed:
        return skip("no meshed pods")
    not_ready = [
        f"{meta.namespace}/{meta.name}"
        for p, meta in meshed
        if not any(
            c.type == "Ready" and c.status == "True"
            for c in (p.status.conditions if p.status else None) or []
        )
    ]
    if not_ready:
        return fail(f"{len(not_ready)} of {len(meshed)} not ready: {_listed(not_ready)}")
    return ok(f"{len(meshed)} meshed pods ready")


PROXIES = Group(
    "smimesh-proxies",
    (
        Check(
            "meshed pods are ready",
            "a proxy is ready once it holds a config from the operator; see its /ready",
            proxies_ready,
        ),
    ),
)


# --- smi-objects ------------------------------------------------------------------------


def _smi_objects(context: CheckContext) -> list[dict[str, Any]]:
    def fetch() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for info in SMI_CRDS:
            crd = _crd(context, info.crd_name)
            if crd is None:
                continue
            version = next((v.name for v in crd.spec.versions if v.storage), info.hub_version)
            listed: Any = client.CustomObjectsApi(context.api).list_cluster_custom_object(
                info.group, version, info.plural, _request_timeout=context.timeout
            )
            found += listed.get("items", [])
        return found

    objects: list[dict[str, Any]] = context.remember("smi-objects", fetch)
    return objects


def _with_condition(context: CheckContext, kinds_: tuple[str, ...]) -> Verdict:
    objects = _smi_objects(context)
    if not objects:
        return skip("no SMI objects")
    bad: list[str] = []
    unknown: list[str] = []
    for obj in objects:
        meta = obj.get("metadata", {})
        label = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
        conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
        for kind in kinds_:
            condition = conditions.get(kind)
            if condition is None:
                unknown.append(label)
                break
            if condition.get("status") != "True":
                bad.append(f"{label} ({kind}: {condition.get('reason', '')})")
                break
    if bad:
        return fail(f"{len(bad)} of {len(objects)}: {_listed(bad)}")
    if unknown:
        return warn(f"{len(unknown)} of {len(objects)} have no status yet: {_listed(unknown)}")
    return ok(f"{len(objects)} objects")


SMI_OBJECTS = Group(
    "smi-objects",
    (
        Check(
            "SMI objects are accepted and their references resolve",
            "`kubectl smi status` shows each object's reason and message",
            lambda context: _with_condition(context, ("Accepted", "ResolvedRefs")),
        ),
        Check(
            "SMI objects are programmed in every connected proxy",
            "`kubectl smi status` names the proxies still waiting",
            lambda context: _with_condition(context, ("Programmed",)),
        ),
    ),
)


def groups(*, pre: bool = False) -> tuple[Group, ...]:
    """The checks to run: before installing (`pre`), or of an installed mesh."""
    if pre:
        return (KUBERNETES_API, PRE_INSTALL)
    return (KUBERNETES_API, CRDS, OPERATOR_GROUP, WEBHOOKS, PROXIES, SMI_OBJECTS)
