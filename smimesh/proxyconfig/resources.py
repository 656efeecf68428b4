"""The contract as named, versioned resources, and one proxy's `ProxyConfig` assembled from
the resources it holds.

`smimesh.compiler.incremental` produces the resources and, per change set, a
`ResourceDelta`; the config server sends deltas of them to proxies (`deltas`); `assemble` turns
what one proxy holds into the `snapshots.ProxyConfig` its sidecar builds a table from, equal
(version and bytes) to what `compiler.compiling.compile_mesh` gives that proxy. Each
version is `snapshots.digest` of the body's canonical JSON (`snapshots.canonical_json`).

Names and bodies:
- `outbound/<ns>/<svc>`: an `outbound.OutboundService`, one per Service.
- `inbound/<ns>/<sa>/<port>/<protocol>`: an `inbound.InboundPolicy`, one per inbound port
  policy. Its content (rules, permissive) is a function of exactly the TrafficTargets whose
  destination is the ServiceAccount, the routes they name, the namespace's access mode, the
  port and its protocol, so every pod with that key really shares it. The protocol is in
  the key because two pods of one ServiceAccount may back different Services that give one
  target port different protocols. The app port is not: it comes from each pod's
  annotation, so it stays in the pod's own resource, and one policy serves pods whose apps
  listen on different ports.
- `proxy/<ns>/<pod>`: a `Workload`, the per-pod rest (identity, which ports it serves, with
  which app port and policy); sent only to its own proxy.
- `settings`: the `snapshots.MeshSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from pydantic import Field

from smimesh.proxyconfig import inbound, outbound, refs, snapshots

SETTINGS: Final = "settings"
OUTBOUND_PREFIX: Final = "outbound/"


class PortBinding(refs.Frozen):
    """A port the pod serves: the shared policy that guards it and where its app listens."""

    port: int = Field(ge=1, le=65535)
    app_port: int = Field(ge=1, le=65535)
    policy: str = Field(description="The name of the port's `inbound/...` resource.")


class Workload(refs.Frozen):
    """What is one pod's own: its proxy, the identity it holds, the ports it serves."""

    proxy: refs.ProxyRef
    identity: str
    ports: tuple[PortBinding, ...] = Field(default=(), description="Sorted by port.")


Body = TypeVar(
    "Body", outbound.OutboundService, inbound.InboundPolicy, Workload, snapshots.MeshSettings
)


@dataclass(frozen=True)
class Resource(Generic[Body]):
    """A named body, its canonical JSON and the version (content hash) of that JSON."""

    name: str
    body: Body
    encoded: bytes
    version: str

    @classmethod
    def of(cls, name: str, body: Body) -> Resource[Body]:
        encoded = snapshots.canonical_json(body)
        return cls(name=name, body=body, encoded=encoded, version=snapshots.digest(encoded))


AnyResource = (
    Resource[outbound.OutboundService]
    | Resource[inbound.InboundPolicy]
    | Resource[Workload]
    | Resource[snapshots.MeshSettings]
)


@dataclass(frozen=True)
class ResourceDelta:
    """What one change set did to the resources: new or changed ones by name, and the names
    of those that are gone."""

    changed: Mapping[str, AnyResource]
    removed: frozenset[str]


def outbound_name(service: refs.ServiceRef) -> str:
    return f"{OUTBOUND_PREFIX}{service.namespace}/{service.name}"


def inbound_name(namespace: str, service_account: str, port: int, protocol: str) -> str:
    return f"inbound/{namespace}/{service_account}/{port}/{protocol}"


def workload_name(namespace: str, pod: str) -> str:
    return f"proxy/{namespace}/{pod}"


_B = TypeVar("_B")


def _body(resources: Mapping[str, AnyResource], name: str, kind: type[_B]) -> _B:
    body = resources[name].body
    if not isinstance(body, kind):
        raise TypeError(f"resource {name} holds a {type(body).__name__}, not a {kind.__name__}")
    return body


@dataclass(frozen=True)
class OutboundSection:
    """Every outbound resource held, in `compile_mesh`'s order (by name, i.e. namespace/name),
    and their bodies' JSON joined: what every proxy's config shares, built once per update."""

    services: tuple[outbound.OutboundService, ...]
    encoded: bytes

    @classmethod
    def of(cls, resources: Mapping[str, AnyResource]) -> OutboundSection:
        chosen = sorted(name for name in resources if name.startswith(OUTBOUND_PREFIX))
        return cls(
            services=tuple(_body(resources, name, outbound.OutboundService) for name in chosen),
            encoded=snapshots.join_outbound(resources[name].encoded for name in chosen),
        )


def policies_of(workload: Workload) -> frozenset[str]:
    """The names of the inbound policies a workload binds."""
    return frozenset(port.policy for port in workload.ports)


def assemble(
    resources: Mapping[str, AnyResource],
    workload: str,
    *,
    section: OutboundSection | None = None,
) -> snapshots.ProxyConfig:
    """The config of the proxy whose `proxy/...` resource is named `workload`, from the
    settings, its workload, the inbound policies it binds and every outbound resource held
    (sorted by name, which is `compile_mesh`'s order: by namespace/name). `section`, when
    given, must be `OutboundSection.of(resources)`: one shared by many proxies."""
    own = _body(resources, workload, Workload)
    section = section or OutboundSection.of(resources)
    return snapshots.ProxyConfig.build(
        proxy=own.proxy,
        identity=own.identity,
        settings=_body(resources, SETTINGS, snapshots.MeshSettings),
        outbound=section.services,
        inbound=tuple(
            _body(resources, port.policy, inbound.InboundPolicy).bind(port.app_port)
            for port in own.ports
        ),
        outbound_json=section.encoded,
    )


def split(config: snapshots.ProxyConfig) -> dict[str, AnyResource]:
    """The resources one config is made of, named as the compiler names them: `assemble` of
    them gives `config` back when its outbound section is sorted by namespace/name (as
    `compile_mesh`'s is). For configs written by hand (tests, files) served over the stream."""
    proxy = config.proxy
    held: dict[str, AnyResource] = {SETTINGS: Resource.of(SETTINGS, config.settings)}
    for service in config.outbound:
        name = outbound_name(service.service)
        held[name] = Resource.of(name, service)
    bindings = []
    for port in config.inbound:
        name = inbound_name(proxy.namespace, proxy.service_account, port.port, port.protocol)
        policy = inbound.InboundPolicy(
            port=port.port, protocol=port.protocol, permissive=port.permissive, rules=port.rules
        )
        held[name] = Resource.of(name, policy)
        bindings.append(PortBinding(port=port.port, app_port=port.app_port, policy=name))
    workload = workload_name(proxy.namespace, proxy.pod)
    own = Workload(proxy=proxy, identity=config.identity, ports=tuple(bindings))
    held[workload] = Resource.of(workload, own)
    return held
