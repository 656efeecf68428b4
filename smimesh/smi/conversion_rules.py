"""How each older SMI version's fields map onto its hub's, one small class per layout.

Used only by `conversion`, which handles envelopes and annotations. Each rule set works on an
object's body (the wire dict without apiVersion/kind/metadata/status):
`up` gives the hub body plus the version's extras the hub cannot hold; `down` gives the
version's body plus the hub data it cannot hold; `restore_up`/`restore_down` put such saved
data back.
"""

from __future__ import annotations

from typing import Any

from smimesh.smi import quantities, split

__all__ = ["Rules", "for_version"]

Body = dict[str, Any]


class Rules:
    """Same layout on both sides: nothing moves, nothing is lost."""

    def up(self, body: Body) -> tuple[Body, Body]:
        return body, {}

    def down(self, hub_body: Body) -> tuple[Body, Body]:
        return hub_body, {}

    def restore_up(self, hub_body: Body, saved: Body) -> Body:
        return hub_body

    def restore_down(self, body: Body, extras: Body) -> Body:
        return body


class SplitRules(Rules):
    """TrafficSplit v1alpha1/v1alpha2: no `matches`; v1alpha1 weights are Quantities."""

    def __init__(self, *, quantities_: bool) -> None:
        self.quantities = quantities_

    def up(self, body: Body) -> tuple[Body, Body]:
        spec = dict(body["spec"])
        if not self.quantities:
            return {"spec": spec}, {}
        written = [backend["weight"] for backend in spec["backends"]]
        weights = _ratio(written)  # QuantityError: conversion reports it on spec.backends
        spec["backends"] = [
            {**backend, "weight": weight}
            for backend, weight in zip(spec["backends"], weights, strict=True)
        ]
        same = all(type(w) is int and w == n for w, n in zip(written, weights, strict=True))
        return {"spec": spec}, ({} if same else {"weights": written})

    def down(self, hub_body: Body) -> tuple[Body, Body]:
        spec = dict(hub_body["spec"])
        matches = spec.pop("matches", None)
        return {"spec": spec}, ({} if matches is None else {"matches": matches})

    def restore_up(self, hub_body: Body, saved: Body) -> Body:
        spec = dict(hub_body["spec"])
        if "matches" in saved and "matches" not in spec:
            spec["matches"] = saved["matches"]
        return {**hub_body, "spec": spec}

    def restore_down(self, body: Body, extras: Body) -> Body:
        written = extras.get("weights")
        backends = body["spec"]["backends"]
        if not isinstance(written, list) or len(written) != len(backends):
            return body
        try:
            unchanged = _ratio(written) == [backend["weight"] for backend in backends]
        except (quantities.QuantityError, TypeError):
            return body
        if not unchanged:
            return body
        spec = dict(body["spec"])
        spec["backends"] = [
            {**backend, "weight": weight} for backend, weight in zip(backends, written, strict=True)
        ]
        return {**body, "spec": spec}


def _ratio(written: list[Any]) -> list[int]:
    values = [quantities.Quantity.of(weight).value for weight in written]
    return quantities.integer_ratio(values, limit=split.INT32_MAX)


OLD_RULE_KINDS = ("HTTPRouteGroup", "TCPRoute")


class TargetRules(Rules):
    """TrafficTarget v1alpha1 (top level, `specs`) and v1alpha2 (`spec`, `rules`), with ports."""

    def __init__(self, *, nested: bool) -> None:
        self.nested = nested
        self.rules_key = "rules" if nested else "specs"

    def up(self, body: Body) -> tuple[Body, Body]:
        fields = dict(body["spec"]) if self.nested else dict(body)
        destination = dict(fields["destination"])
        port = destination.pop("port", None)
        spec = {
            "destination": destination,
            "rules": fields.get(self.rules_key) or [],
            "sources": fields.get("sources") or [],
        }
        extras: Body = {} if port is None else {"port": port}
        unset = [key for key in (self.rules_key, "sources") if key not in fields]
        if unset:
            extras["unset"] = unset
        return {"spec": spec}, extras

    def down(self, hub_body: Body) -> tuple[Body, Body]:
        spec = hub_body["spec"]
        kept = [rule for rule in spec["rules"] if rule["kind"] in OLD_RULE_KINDS]
        lost: Body = {} if len(kept) == len(spec["rules"]) else {"rules": spec["rules"]}
        fields = {
            "destination": spec["destination"],
            self.rules_key: kept,
            "sources": spec["sources"],
        }
        return ({"spec": fields} if self.nested else fields), lost

    def restore_up(self, hub_body: Body, saved: Body) -> Body:
        saved_rules = saved.get("rules")
        if not isinstance(saved_rules, list):
            return hub_body
        spec = dict(hub_body["spec"])
        expressible = [rule for rule in saved_rules if rule.get("kind") in OLD_RULE_KINDS]
        if expressible == spec["rules"]:
            spec["rules"] = saved_rules
        else:
            spec["rules"] = spec["rules"] + [
                rule for rule in saved_rules if rule.get("kind") not in OLD_RULE_KINDS
            ]
        return {**hub_body, "spec": spec}

    def restore_down(self, body: Body, extras: Body) -> Body:
        fields = dict(body["spec"]) if self.nested else dict(body)
        if "port" in extras:
            fields["destination"] = {**fields["destination"], "port": extras["port"]}
        for key in extras.get("unset", []):
            if key in fields and not fields[key]:
                del fields[key]
        return {"spec": fields} if self.nested else fields


class RouteGroupRules(Rules):
    """HTTPRouteGroup v1alpha1/v1alpha2: `matches` at the top level; v1alpha1 has no headers."""

    def __init__(self, *, headers: bool) -> None:
        self.headers = headers

    def up(self, body: Body) -> tuple[Body, Body]:
        return {"spec": {"matches": body["matches"]}}, {}

    def down(self, hub_body: Body) -> tuple[Body, Body]:
        matches = hub_body["spec"]["matches"]
        if self.headers:
            return {"matches": matches}, {}
        lost = [[match["name"], match["headers"]] for match in matches if "headers" in match]
        stripped = [{k: v for k, v in match.items() if k != "headers"} for match in matches]
        return {"matches": stripped}, ({"headers": lost} if lost else {})

    def restore_up(self, hub_body: Body, saved: Body) -> Body:
        matches = [dict(match) for match in hub_body["spec"]["matches"]]
        for entry in saved.get("headers", []):
            if not (isinstance(entry, list) and len(entry) == 2):
                continue
            name, headers = entry
            for match in matches:
                if match.get("name") == name and "headers" not in match:
                    match["headers"] = headers
                    break
        return {**hub_body, "spec": {**hub_body["spec"], "matches": matches}}


ALL_PORTS: Body = {"matches": {"ports": []}}


class PortRouteRules(Rules):
    """TCPRoute v1alpha1-v1alpha3: no fields (all ports); v1alpha3 may carry `spec: {}`."""

    def up(self, body: Body) -> tuple[Body, Body]:
        return {"spec": ALL_PORTS}, ({"emptySpec": True} if "spec" in body else {})

    def down(self, hub_body: Body) -> tuple[Body, Body]:
        spec = hub_body["spec"]
        return {}, ({} if spec == ALL_PORTS else {"spec": spec})

    def restore_up(self, hub_body: Body, saved: Body) -> Body:
        spec = saved.get("spec")
        return {**hub_body, "spec": spec} if isinstance(spec, dict) else hub_body

    def restore_down(self, body: Body, extras: Body) -> Body:
        return {**body, "spec": {}} if extras.get("emptySpec") else body


_RULES: dict[tuple[str, str], Rules] = {
    ("TrafficSplit", "v1alpha1"): SplitRules(quantities_=True),
    ("TrafficSplit", "v1alpha2"): SplitRules(quantities_=False),
    ("TrafficTarget", "v1alpha1"): TargetRules(nested=False),
    ("TrafficTarget", "v1alpha2"): TargetRules(nested=True),
    ("HTTPRouteGroup", "v1alpha1"): RouteGroupRules(headers=False),
    ("HTTPRouteGroup", "v1alpha2"): RouteGroupRules(headers=True),
    ("TCPRoute", "v1alpha1"): PortRouteRules(),
    ("TCPRoute", "v1alpha2"): PortRouteRules(),
    ("TCPRoute", "v1alpha3"): PortRouteRules(),
}


def for_version(kind: str, version: str) -> Rules:
    """The rules between `version` of `kind` and its hub (same layout if none are listed)."""
    return _RULES.get((kind, version), Rules())
