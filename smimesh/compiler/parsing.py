"""Kubernetes objects (as JSON dicts) -> the compiler's typed mesh model, once, at the edge.

Used by the operator's indexes (each watched object is parsed when it changes) and by golden
tests (a YAML scenario becomes a `state.MeshState`). SMI objects of any served version are
parsed by `smimesh.smi.documents.parse` (the one parser of SMI objects) and converted to
their hub. Each object becomes a `state.MeshObject`, which `state.MeshState.of` files in its
field. Pure; a bad object raises `ParseError` naming it, never a bare KeyError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast, get_args

import pydantic

from smimesh.compiler import state
from smimesh.kube import names
from smimesh.proxyconfig import refs, snapshots
from smimesh.smi import access, documents, problems, specs, split

Raw = Mapping[str, Any]


ParseError = documents.ParseError
"""An object the mesh cannot read; the message names it and says what is wrong where."""


def _meta(raw: Raw) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], raw.get("metadata") or {})


def _name(raw: Raw) -> str:
    meta = _meta(raw)
    return f"{raw.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def service(raw: Raw) -> state.Service:
    meta, spec = _meta(raw), raw.get("spec") or {}
    ports = [
        state.ServicePort(
            name=port.get("name", ""),
            port=port["port"],
            target_port=port.get("targetPort", port["port"]),
            transport=port.get("protocol", "TCP"),
            app_protocol=port.get("appProtocol"),
        )
        for port in spec.get("ports") or []
    ]
    cluster_ip = spec.get("clusterIP")
    return state.Service(
        ref=refs.ServiceRef(namespace=meta["namespace"], name=meta["name"]),
        cluster_ip=cluster_ip if cluster_ip and cluster_ip != "None" else None,
        selector=spec.get("selector"),
        ports=tuple(ports),
        annotations=meta.get("annotations") or {},
    )


def endpoint_slice(raw: Raw) -> state.EndpointSlice:
    meta = _meta(raw)
    labels = meta.get("labels") or {}
    endpoints: list[state.SliceEndpoint] = []
    for endpoint in raw.get("endpoints") or []:
        ready = (endpoint.get("conditions") or {}).get("ready")
        target = endpoint.get("targetRef") or {}
        pod = target.get("name") if target.get("kind", "Pod") == "Pod" else None
        endpoints.extend(
            state.SliceEndpoint(address=address, pod=pod, ready=ready is not False)
            for address in endpoint.get("addresses") or []
        )
    return state.EndpointSlice(
        namespace=meta["namespace"],
        name=meta["name"],
        service=labels.get("kubernetes.io/service-name", ""),
        ports=tuple(
            state.SlicePort(name=port.get("name") or "", port=port["port"])
            for port in raw.get("ports") or []
            if port.get("port")
        ),
        endpoints=tuple(endpoints),
    )


def _app_ports(annotation: str | None) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for item in (annotation or "").split(","):
        if "=" in item:
            port, app_port = item.split("=", 1)
            mapping[int(port)] = int(app_port)
    return mapping


def pod(raw: Raw) -> state.Pod:
    meta, spec, status = _meta(raw), raw.get("spec") or {}, raw.get("status") or {}
    annotations = meta.get("annotations") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return state.Pod(
        namespace=meta["namespace"],
        name=meta["name"],
        service_account=spec.get("serviceAccountName") or "default",
        labels=meta.get("labels") or {},
        ip=status.get("podIP"),
        ready=conditions.get("Ready") == "True",
        meshed=names.INJECTED_ANNOTATION in annotations,
        app_ports=_app_ports(annotations.get(names.APP_PORTS_ANNOTATION)),
    )


def namespace(raw: Raw) -> state.Namespace:
    meta = _meta(raw)
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    mode = annotations.get(names.NAMESPACE_ACCESS_ANNOTATION)
    if mode is not None and mode not in get_args(state.AccessMode):
        reason = f"{names.NAMESPACE_ACCESS_ANNOTATION}={mode!r} is not strict or permissive"
        raise ParseError(_name(raw), [problems.Problem("", reason)])
    return state.Namespace(
        name=meta["name"],
        meshed=labels.get(names.NAMESPACE_MESH_LABEL) == "enabled",
        access=cast(state.AccessMode | None, mode),
    )


def mesh_state(
    objects: Iterable[Raw],
    *,
    settings: snapshots.MeshSettings | None = None,
    default_access: state.AccessMode = "permissive",
) -> state.MeshState:
    """A MeshState from a bag of objects (Lists flattened, unknown kinds ignored)."""
    parsed = (parse_object(raw) for raw in _flatten(objects))
    return state.MeshState.of(
        (obj for obj in parsed if obj is not None),
        settings=settings,
        default_access=default_access,
    )


def parse_object(raw: Raw) -> state.MeshObject | None:
    """The mesh's typed form of a kind it reads (an SMI object as its hub); None for others.

    SMI objects go through `smimesh.smi.documents.parse`, strictly (as the apiserver stores
    them, no quirks): one it has no model for is another kind; one it cannot read raises.
    """
    kind = str(raw.get("kind"))
    reader = _CORE.get(kind)
    if reader is not None:
        try:
            return reader(raw)
        except ParseError:
            raise
        except (KeyError, TypeError, ValueError, pydantic.ValidationError) as exc:
            reason = f"cannot read it ({type(exc).__name__}: {exc})"
            raise ParseError(_name(raw), [problems.Problem("", reason)]) from exc
    parsed = documents.parse(dict(raw))
    if parsed.version is None:
        return None
    hub = parsed.require()
    return hub if isinstance(hub, _HUBS) else None


def _flatten(objects: Iterable[Raw]) -> Iterable[Raw]:
    for raw in objects:
        if raw.get("kind") == "List" or str(raw.get("kind", "")).endswith("List"):
            yield from _flatten(raw.get("items") or [])
        elif raw:
            yield raw


_CORE: dict[str, Callable[[Raw], state.MeshObject]] = {
    "Service": service,
    "EndpointSlice": endpoint_slice,
    "Pod": pod,
    "Namespace": namespace,
}
_HUBS = (split.TrafficSplit, access.TrafficTarget, specs.HTTPRouteGroup, specs.TCPRoute)
