"""Status conditions and Events on SMI objects, written by the leader only.

Reads `indexing.MeshIndex` (which SMI objects exist, which could not be read),
`publishing.Publisher` (the newest compilation's findings, and whether every connected proxy
ACKed it) and `leading.LeaderElector`. Writes `status.conditions` (`Accepted`,
`ResolvedRefs`, `Programmed`) through the status subresource with a merge patch — never
`spec`, which Flagger and Argo Rollouts own — and an Event whenever a condition changes.
What to write is decided on the event loop, which owns the index and the sessions (`plan`);
only the API calls run in a worker thread, on that immutable plan (`reconcile`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from smimesh._aio import waiting
from smimesh.compiler import findings
from smimesh.kube import names
from smimesh.operator import indexing, leading, publishing

log = logging.getLogger(__name__)

PLURALS = {
    "TrafficSplit": "trafficsplits",
    "TrafficTarget": "traffictargets",
    "HTTPRouteGroup": "httproutegroups",
    "TCPRoute": "tcproutes",
}
Condition = tuple[str, str, str, str]
"""(type, status "True"/"False", reason, message)."""


@dataclass(frozen=True)
class Planned:
    """One object to reconcile: its body as the index holds it (the index replaces bodies,
    never changes one) and the conditions it should carry."""

    key: indexing.Key
    raw: Mapping[str, Any]
    conditions: tuple[Condition, ...]


def conditions_for(
    key: indexing.Key,
    found: list[findings.Finding],
    unreadable: str | None,
    *,
    programmed: bool,
    pending: list[str],
) -> list[Condition]:
    """The three conditions of one object, from what the compiler and the proxies said."""
    if unreadable is not None:
        return [
            ("Accepted", "False", "Invalid", unreadable),
            ("ResolvedRefs", "False", "Invalid", "the object could not be read"),
            ("Programmed", "False", "Invalid", "not programmed: the object is invalid"),
        ]
    result: list[Condition] = []
    for kind, ok_reason in (("Accepted", "Accepted"), ("ResolvedRefs", "ResolvedRefs")):
        problems = [f for f in found if f.condition == kind]
        if problems:
            result.append(
                (kind, "False", problems[0].reason, "; ".join(p.message for p in problems))
            )
        else:
            result.append((kind, "True", ok_reason, ""))
    if programmed:
        result.append(("Programmed", "True", "Programmed", "every connected proxy ACKed it"))
    else:
        waiting = ", ".join(pending[:5]) + (" …" if len(pending) > 5 else "")
        result.append(("Programmed", "False", "Pending", f"waiting for {waiting}"))
    return result


def _on_object(raw: Mapping[str, Any]) -> tuple[int, tuple[Condition, ...]] | None:
    """The conditions the object carries now, if all are for one generation."""
    found = (raw.get("status") or {}).get("conditions") or []
    generations = {c.get("observedGeneration") for c in found}
    if len(generations) != 1:
        return None
    conditions = tuple(
        (c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""))
        for c in found
    )
    return (int(generations.pop() or 0), conditions)


@dataclass
class StatusWriter:
    api: client.ApiClient
    index: indexing.MeshIndex
    publisher: publishing.Publisher
    elector: leading.LeaderElector
    written: dict[indexing.Key, tuple[Condition, ...]] = field(default_factory=dict)
    _written_generation: dict[
        indexing.Key, tuple[str | None, tuple[int, tuple[Condition, ...]]]
    ] = field(default_factory=dict)

    def desired(self) -> dict[indexing.Key, list[Condition]]:
        """Every SMI object's conditions; on the event loop (reads the index and sessions)."""
        by_key: dict[tuple[str, str, str], list[findings.Finding]] = {}
        for finding in self.publisher.findings:
            by_key.setdefault(finding.key, []).append(finding)
        current = self.publisher.compiled_generation >= self.index.generation
        programmed = current and self.publisher.programmed()
        pending = self.publisher.pending() if current else ["the next compilation"]
        result = {}
        for key in [*self.index.raw_smi, *self.index.unreadable]:
            kind, _, namespace, name = key
            if kind not in PLURALS:
                continue
            result[key] = conditions_for(
                key,
                by_key.get((kind, namespace, name), []),
                self.index.unreadable.get(key),
                programmed=programmed,
                pending=pending,
            )
        return result

    def plan(self) -> tuple[Planned, ...]:
        """What `reconcile` needs, taken on the event loop: the objects and their conditions.
        Cheap (no I/O), and it is the only part that reads the index and the sessions."""
        return tuple(
            Planned(key, raw, tuple(conditions))
            for key, conditions in self.desired().items()
            if (raw := self.index.raw_smi.get(key)) is not None
        )

    def _write(
        self, key: indexing.Key, conditions: Sequence[Condition], raw: Mapping[str, Any]
    ) -> None:
        kind, group, namespace, name = key
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = {c["type"]: c for c in (raw.get("status") or {}).get("conditions") or []}
        meta = raw.get("metadata") or {}
        body = [
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": meta.get("generation", 0),
                "lastTransitionTime": old[type_]["lastTransitionTime"]
                if type_ in old
                and old[type_].get("status") == status
                and old[type_].get("lastTransitionTime")
                else now,
            }
            for type_, status, reason, message in conditions
        ]
        version = str(raw.get("apiVersion", "")).rpartition("/")[2]
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
            group,
            version,
            namespace,
            PLURALS[kind],
            name,
            {"status": {"conditions": body}},
            field_manager=names.FIELD_MANAGER,  # else the client's "OpenAPI-Generator"
        )
        before = self.written.get(key, ())
        for condition in conditions:
            if condition not in before and (condition[1] == "False" or before):
                self._event(raw, condition)

    def _event(self, raw: Mapping[str, Any], condition: Condition) -> None:
        type_, status, reason, message = condition
        meta = raw.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta.get('name')}.", namespace=meta.get("namespace")
            ),
            involved_object=client.V1ObjectReference(
                api_version=raw.get("apiVersion"),
                kind=raw.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            type="Normal" if status == "True" else "Warning",
            reason=reason,
            message=f"{type_}={status}: {message}" if message else f"{type_}={status}",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=names.EVENT_COMPONENT),
        )
        client.CoreV1Api(self.api).create_namespaced_event(
            str(meta.get("namespace")), event, field_manager=names.FIELD_MANAGER
        )

    def reconcile(self, plan: Sequence[Planned]) -> int:
        """Write every object of `plan` whose conditions changed; returns how many were
        written. Blocking API calls: runs in a worker thread, touching only `plan` and this
        writer's own records (which the loop clears only between two reconciles)."""
        writes = 0
        for item in plan:
            key, conditions, raw = item.key, item.conditions, item.raw
            meta = raw.get("metadata") or {}
            generation = meta.get("generation", 0)
            stamped = (generation, conditions)
            # Keyed by uid too: an object deleted and created again under the same name
            # starts at generation 1 again and must get its own status.
            ours = self._written_generation.get(key)
            if (ours == (meta.get("uid"), stamped)) or _on_object(raw) == stamped:
                # Equal conditions for a new generation are written again: observedGeneration
                # is how Flagger, Argo and `kubectl wait` know the new spec was programmed.
                self.written[key] = conditions
                continue
            try:
                self._write(key, conditions, raw)
            except client.ApiException as exc:
                if exc.status != 404:
                    log.warning("status of %s/%s: %s %s", key[2], key[3], exc.status, exc.reason)
                continue
            self.written[key] = conditions
            self._written_generation[key] = (meta.get("uid"), stamped)
            writes += 1
        return writes

    async def run(self, *, period: float = 5.0) -> None:
        """Reconcile after compilations, proxies' answers (and sessions coming and going),
        leadership changes, and every `period`."""
        leadership, progress = self.elector.leadership, self.publisher.progress
        seen, answered = leadership.version, progress.version
        while True:
            await waiting.first(
                self.publisher.compiled.wait(),
                progress.wait_newer(answered),
                leadership.wait_newer(seen),
                timeout=period,
            )
            # before acting: a change from here on wakes the next wait
            seen, answered = leadership.version, progress.version
            if not self.elector.is_leader:
                self.written.clear()
                self._written_generation.clear()
                continue
            await asyncio.to_thread(self.reconcile, self.plan())
