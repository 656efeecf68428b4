"""Hypothesis strategies for valid SMI objects of every version, as wire dicts."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from smimesh.smi import specs

names = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
regex_text = st.sampled_from(["/", "/api/.*", "/books-bought", ".*a-book.*new", "/v[0-9]+/"])
Wire = dict[str, Any]


def _meta(draw: st.DrawFn) -> Wire:
    meta: Wire = {"name": draw(names)}
    if draw(st.booleans()):
        meta["namespace"] = draw(names)
    if draw(st.booleans()):
        meta["labels"] = draw(st.dictionaries(names, names, min_size=1, max_size=2))
    return meta


def _unique_services(draw: st.DrawFn) -> list[str]:
    return draw(st.lists(names, min_size=1, max_size=4, unique=True))


quantity_text = st.one_of(
    st.integers(0, 10**6),
    st.integers(0, 10**6).map(str),
    st.integers(0, 999).map(lambda n: f"{n}m"),
    st.integers(0, 99).map(lambda n: f"{n}k"),
    st.integers(0, 9).map(lambda n: f"{n}Ki"),
    st.integers(1, 9).map(lambda n: f"{n}e2"),
    st.integers(0, 99).map(lambda n: f"0.{n}"),
)


@st.composite
def traffic_splits(draw: st.DrawFn, version: str) -> Wire:
    services = _unique_services(draw)
    weight = quantity_text if version == "v1alpha1" else st.integers(0, 10**6)
    spec: Wire = {
        "service": draw(names),
        "backends": [{"service": service, "weight": draw(weight)} for service in services],
    }
    if version in ("v1alpha3", "v1alpha4") and draw(st.booleans()):
        spec["matches"] = [
            {"kind": "HTTPRouteGroup", "name": name}
            for name in draw(st.lists(names, min_size=1, max_size=2, unique=True))
        ]
    api = f"split.smi-spec.io/{version}"
    return {"apiVersion": api, "kind": "TrafficSplit", "metadata": _meta(draw), "spec": spec}


@st.composite
def _subjects(draw: st.DrawFn) -> Wire:
    subject: Wire = {"kind": "ServiceAccount", "name": draw(names)}
    if draw(st.booleans()):
        subject["namespace"] = draw(names)
    return subject


@st.composite
def traffic_targets(draw: st.DrawFn, version: str) -> Wire:
    kinds = ["HTTPRouteGroup", "TCPRoute"] + (["UDPRoute"] if version == "v1alpha3" else [])
    rule = st.fixed_dictionaries(
        {"kind": st.sampled_from(kinds), "name": names},
        optional={"matches": st.lists(names, min_size=1, max_size=3)},
    )
    destination = draw(_subjects())
    if version != "v1alpha3" and draw(st.booleans()):
        destination["port"] = draw(st.integers(1, 65535))
    fields: Wire = {"destination": destination}
    sources = draw(st.lists(_subjects(), min_size=1, max_size=3))
    rules = draw(st.lists(rule, min_size=1, max_size=3))
    if version == "v1alpha3" or draw(st.booleans()):
        fields["sources"] = sources
    if version == "v1alpha3" or draw(st.booleans()):
        fields["specs" if version == "v1alpha1" else "rules"] = rules
    body = fields if version == "v1alpha1" else {"spec": fields}
    api = f"access.smi-spec.io/{version}"
    return {"apiVersion": api, "kind": "TrafficTarget", "metadata": _meta(draw), **body}


headers = st.one_of(
    st.dictionaries(names, regex_text, min_size=1, max_size=2),
    st.lists(st.dictionaries(names, regex_text, min_size=1, max_size=1), min_size=1, max_size=2),
)


@st.composite
def route_groups(draw: st.DrawFn, version: str) -> Wire:
    matches = []
    for name in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        match: Wire = {"name": name}
        if draw(st.booleans()):
            match["pathRegex"] = draw(regex_text)
        if draw(st.booleans()):
            match["methods"] = draw(st.lists(st.sampled_from(specs.HTTP_METHODS[1:]), max_size=3))
        if version != "v1alpha1" and draw(st.booleans()):
            match["headers"] = draw(headers)
        matches.append(match)
    body: Wire = (
        {"matches": matches}
        if version in ("v1alpha1", "v1alpha2")
        else {"spec": {"matches": matches}}
    )
    api = f"specs.smi-spec.io/{version}"
    return {"apiVersion": api, "kind": "HTTPRouteGroup", "metadata": _meta(draw), **body}


@st.composite
def port_routes(draw: st.DrawFn, version: str, kind: str = "TCPRoute") -> Wire:
    wire: Wire = {
        "apiVersion": f"specs.smi-spec.io/{version}",
        "kind": kind,
        "metadata": _meta(draw),
    }
    if version == "v1alpha4":
        matches: Wire = {"ports": draw(st.lists(st.integers(1, 65535), max_size=3, unique=True))}
        if draw(st.booleans()):
            matches["name"] = draw(names)
        wire["spec"] = {"matches": matches}
    elif version == "v1alpha3" and draw(st.booleans()):
        wire["spec"] = {}
    return wire


def objects(kind: str, version: str) -> st.SearchStrategy[Wire]:
    if kind == "TrafficSplit":
        return traffic_splits(version)
    if kind == "TrafficTarget":
        return traffic_targets(version)
    if kind == "HTTPRouteGroup":
        return route_groups(version)
    return port_routes(version, kind)


VERSIONS = [
    *[("TrafficSplit", v) for v in ("v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4")],
    *[("TrafficTarget", v) for v in ("v1alpha1", "v1alpha2", "v1alpha3")],
    *[("HTTPRouteGroup", v) for v in ("v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4")],
    *[("TCPRoute", v) for v in ("v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4")],
    ("UDPRoute", "v1alpha4"),
]
