"""The operator's in-memory index of cluster state, fed by kopf watch events.

`watching` calls `MeshIndex.apply` for every event (never blocking: parsing is cheap and
synchronous); `publishing` waits on `changed`, then takes the change set gathered since its
last look (`take_changes`: each key's newest object, or None when it is gone) for the
incremental compiler. Objects the mesh cannot read are kept out of the model and remembered with the
reason, so the status writer can report them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from smimesh.compiler import parsing, state
from smimesh.proxyconfig import snapshots

Key = tuple[str, str, str, str]
"""(kind, apiVersion group, namespace, name)."""


def key_of(raw: Mapping[str, Any]) -> Key:
    meta = raw.get("metadata") or {}
    group = str(raw.get("apiVersion", "")).rpartition("/")[0]
    return (str(raw.get("kind")), group, meta.get("namespace") or "", meta.get("name") or "")


_KEPT_METADATA = ("name", "namespace", "labels", "annotations", "creationTimestamp")


def _essentials(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An SMI object without what the compiler never reads (status, resourceVersion, ...),
    so that our own status writes and bookkeeping updates do not cause recompilations."""
    meta = raw.get("metadata") or {}
    kept = {field: meta[field] for field in _KEPT_METADATA if field in meta}
    annotations = {
        name: value
        for name, value in (kept.get("annotations") or {}).items()
        if name != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if annotations:
        kept["annotations"] = annotations
    else:
        kept.pop("annotations", None)
    return {name: value for name, value in raw.items() if name not in ("metadata", "status")} | {
        "metadata": kept
    }


class MeshIndex:
    """Parsed objects by key; a generation counter and an Event that fire on every change,
    and the change set since the last `take_changes` (one entry per key: bounded by the
    objects there are)."""

    def __init__(
        self,
        *,
        settings: snapshots.MeshSettings | None = None,
        default_access: state.AccessMode = "permissive",
    ) -> None:
        self.settings = settings or snapshots.MeshSettings()
        self.default_access: state.AccessMode = default_access
        self.objects: dict[Key, state.MeshObject] = {}
        self.unreadable: dict[Key, str] = {}
        self.raw_smi: dict[Key, Mapping[str, Any]] = {}
        self.generation = 0
        self.changed = asyncio.Event()
        self._changes: dict[Key, state.MeshObject | None] = {}

    def apply(self, raw: Mapping[str, Any], *, deleted: bool = False) -> None:
        """Record an added/modified object, or forget a deleted one."""
        key = key_of(raw)
        before = self.objects.get(key)
        self.unreadable.pop(key, None)
        if deleted:
            self.objects.pop(key, None)
            self.raw_smi.pop(key, None)
        else:
            smi = key[1].endswith("smi-spec.io")
            if smi:
                self.raw_smi[key] = raw
            try:
                parsed = parsing.parse_object(_essentials(raw) if smi else raw)
            except parsing.ParseError as exc:
                self.objects.pop(key, None)
                self.unreadable[key] = str(exc)
                parsed = None
            if parsed is not None:
                self.objects[key] = parsed
        if self.objects.get(key) != before or deleted or key in self.unreadable:
            self.generation += 1
            self._changes[key] = self.objects.get(key)
            self.changed.set()

    def take_changes(self) -> dict[Key, state.MeshObject | None]:
        """Every key changed since the last call, with its object now (None: gone or
        unreadable); the next call starts from here."""
        changes, self._changes = self._changes, {}
        return changes

    def snapshot(self) -> state.MeshState:
        """The current model; cheap (tuples of already-parsed frozen objects)."""
        return state.MeshState.of(
            self.objects.values(), settings=self.settings, default_access=self.default_access
        )
