"""One response of the config stream as a typed value, its wire form, and how it applies.

The operator's publisher builds a `Delta` per proxy from `resources.ResourceDelta`s (only the
resources of the proxy's scope), merges those a slow proxy has not taken yet (`merge`), and
the config server sends `to_message(delta)`; the sidecar's `discovery` reads it back with
`from_message` and moves the resources it holds with `apply` before `resources.assemble`.
Bodies are parsed by the kind their name gives (`resources` lists the names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smimesh.proxyconfig import inbound, outbound, resources, snapshots
from smimesh.proxyconfig import proxyconfig_pb2 as pb


@dataclass(frozen=True)
class Delta:
    """Resources added or changed and names removed; `full` when `changed` is the proxy's
    whole scope (the proxy drops everything else); `version` is the version of the config
    the proxy assembles once it applied this delta."""

    nonce: str
    version: str
    changed: Mapping[str, resources.AnyResource]
    removed: frozenset[str] = frozenset()
    full: bool = False

    def size(self) -> int:
        """Bytes of resource bodies carried (what `bench` counts per update)."""
        return sum(len(resource.encoded) for resource in self.changed.values())


def merge(older: Delta, newer: Delta) -> Delta:
    """One delta with the effect of `older` then `newer`: a proxy that has not taken `older`
    yet gets this instead (the latest state, not a backlog)."""
    if newer.full:
        return newer
    changed = {
        name: resource for name, resource in older.changed.items() if name not in newer.removed
    }
    changed.update(newer.changed)
    removed = frozenset() if older.full else (older.removed | newer.removed) - changed.keys()
    return Delta(
        nonce=newer.nonce,
        version=newer.version,
        changed=changed,
        removed=removed,
        full=older.full,
    )


def apply(
    held: Mapping[str, resources.AnyResource], delta: Delta
) -> dict[str, resources.AnyResource]:
    """The resources held after `delta` (a new map; `held` is left as it was)."""
    after = {} if delta.full else {n: r for n, r in held.items() if n not in delta.removed}
    after.update(delta.changed)
    return after


def to_message(delta: Delta) -> pb.ConfigDelta:
    return pb.ConfigDelta(
        nonce=delta.nonce,
        schema=snapshots.SCHEMA,
        resources=[
            pb.Resource(name=name, version=resource.version, body_json=resource.encoded)
            for name, resource in sorted(delta.changed.items())
        ],
        removed=sorted(delta.removed),
        full=delta.full,
        version=delta.version,
    )


def decode(name: str, body_json: bytes) -> resources.AnyResource:
    """A resource from its name and canonical JSON (raises ValueError on a bad body or an
    unknown kind of name)."""
    if name == resources.SETTINGS:
        return resources.Resource(
            name, snapshots.MeshSettings.model_validate_json(body_json), body_json, _v(body_json)
        )
    kind = name.partition("/")[0]
    if kind == "outbound":
        body = outbound.OutboundService.model_validate_json(body_json)
        return resources.Resource(name, body, body_json, _v(body_json))
    if kind == "inbound":
        policy = inbound.InboundPolicy.model_validate_json(body_json)
        return resources.Resource(name, policy, body_json, _v(body_json))
    if kind == "proxy":
        workload = resources.Workload.model_validate_json(body_json)
        return resources.Resource(name, workload, body_json, _v(body_json))
    raise ValueError(f"unknown kind of resource {name!r}")


def _v(body_json: bytes) -> str:
    return snapshots.digest(body_json)


def from_message(message: pb.ConfigDelta) -> Delta:
    """The typed delta of a response; raises ValueError if any part cannot be read, or a
    resource's version is not the digest of its body."""
    if message.schema and message.schema != snapshots.SCHEMA:
        raise ValueError(f"unknown schema {message.schema!r}")
    changed: dict[str, resources.AnyResource] = {}
    for item in message.resources:
        resource = decode(item.name, item.body_json)
        if item.version and item.version != resource.version:
            raise ValueError(
                f"resource {item.name} says version {item.version}, its body is {resource.version}"
            )
        changed[item.name] = resource
    return Delta(
        nonce=message.nonce,
        version=message.version,
        changed=changed,
        removed=frozenset(message.removed),
        full=message.full,
    )
