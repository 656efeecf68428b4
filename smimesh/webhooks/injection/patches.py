"""RFC 6902 JSON Patches from a before/after pair: what the admission response carries.

Called by `injecting` (Pod before and after injection) and by anyone who mutates a copy and
needs the patch. Dicts are diffed key by key; a list that only grew at its end or its start
gets `add`s, a list of the same length is diffed element-wise, anything else is replaced.
Applying the result to `before` yields `after` exactly (tests check this; the apiserver too).
"""

from __future__ import annotations

from typing import Any

Operation = dict[str, Any]


def pointer_token(key: str) -> str:
    """Escape a key for a JSON Pointer (`smimesh.dev/injected` -> `smimesh.dev~1injected`)."""
    return key.replace("~", "~0").replace("/", "~1")


def json_patch(before: Any, after: Any, path: str = "") -> list[Operation]:
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        return _dict_patch(before, after, path)
    if isinstance(before, list) and isinstance(after, list):
        return _list_patch(before, after, path)
    return [{"op": "replace", "path": path, "value": after}]


def _dict_patch(before: dict[str, Any], after: dict[str, Any], path: str) -> list[Operation]:
    operations: list[Operation] = []
    for key in before:
        if key not in after:
            operations.append({"op": "remove", "path": f"{path}/{pointer_token(key)}"})
    for key, value in after.items():
        child = f"{path}/{pointer_token(key)}"
        if key not in before:
            operations.append({"op": "add", "path": child, "value": value})
        else:
            operations += json_patch(before[key], value, child)
    return operations


def _list_patch(before: list[Any], after: list[Any], path: str) -> list[Operation]:
    if len(before) == len(after):
        operations: list[Operation] = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            operations += json_patch(old, new, f"{path}/{index}")
        return operations
    grown = len(after) - len(before)
    if grown > 0 and after[: len(before)] == before:
        return [
            {"op": "add", "path": f"{path}/{index}", "value": after[index]}
            for index in range(len(before), len(after))
        ]
    if grown > 0 and after[grown:] == before:
        return [
            {"op": "add", "path": f"{path}/{index}", "value": after[index]}
            for index in range(grown)
        ]
    return [{"op": "replace", "path": path, "value": after}]
