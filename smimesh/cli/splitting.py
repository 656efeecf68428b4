"""`kubectl smi split get|set`: read a TrafficSplit's weights as traffic shares, and change them
for a manual canary.

Registered by `smimesh.cli.main`. Reads through `smimesh.cli.reading` (every version, typed and
converted to the hub with `smimesh.smi.conversion`, so a v1alpha1 split's Quantity weights keep
their ratio). `set` writes only `spec.backends`, with a JSON merge patch in the version the
object is stored as, guarded by its resourceVersion: other fields, and writers such as Flagger
and Argo Rollouts, are left alone.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Annotated, Any

import typer
from kubernetes import client

from smimesh.cli import connecting, reading, rendering
from smimesh.kube import names
from smimesh.smi import conversion, split

SPLIT = next(info for info in reading.CRD_KINDS if info.kind == "TrafficSplit")
CONFLICT_RETRIES = 5

app = typer.Typer(
    help="Read and change TrafficSplit weights.", no_args_is_help=True, add_completion=False
)


def percent(share: Fraction) -> str:
    """`share` as a percentage: exact when it has at most two decimals, else marked `≈`."""
    value = share * 100
    for decimals in range(3):
        scaled = value * 10**decimals
        if scaled.denominator == 1:
            whole, part = divmod(scaled.numerator, 10**decimals)
            return f"{whole}.{part:0{decimals}d}%" if decimals else f"{whole}%"
    return f"≈{float(value):.2f}%"


def shares(weights: list[int]) -> list[Fraction]:
    """Each weight's exact share of the total; all zero when the total is zero."""
    total = sum(weights)
    return [Fraction(w, total) if total else Fraction(0) for w in weights]


def _condition(stored: reading.Stored, kind: str) -> dict[str, Any] | None:
    return next((c for c in stored.conditions if c.get("type") == kind), None)


def describe(stored: reading.Stored) -> dict[str, Any]:
    """A split as plain data (JSON/YAML output), weights in hub integers and exact shares."""
    programmed = _condition(stored, "Programmed")
    data: dict[str, Any] = {
        "namespace": stored.namespace,
        "name": stored.name,
        "storedAs": f"{split.GROUP}/{stored.shape_version}",
    }
    if stored.hub is None:
        return {**data, "problem": stored.problem}
    spec = stored.hub.to_wire()["spec"]
    written = stored.raw.get("spec", {}).get("backends", [])
    weights = [int(b["weight"]) for b in spec["backends"]]
    data["service"] = spec["service"]
    data["backends"] = [
        {
            "service": backend["service"],
            "weight": backend["weight"],
            **({"written": w["weight"]} if w.get("weight") != backend["weight"] else {}),
            "share": str(share),
            "percent": percent(share),
        }
        for backend, w, share in zip(spec["backends"], written, shares(weights), strict=False)
    ]
    if "matches" in spec:
        data["matches"] = [m["name"] for m in spec["matches"]]
    if not any(weights):
        data["note"] = "every weight is 0: no traffic goes to any backend"
    data["programmed"] = (
        {k: programmed.get(k, "") for k in ("status", "reason", "message")}
        if programmed
        else {"status": "Unknown", "reason": "NoStatus", "message": "no Programmed condition"}
    )
    return data


def _rows(described: list[dict[str, Any]], *, with_namespace: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    for item in described:
        head = [item["namespace"]] if with_namespace else []
        state = item.get("programmed", {})
        programmed = f"{state.get('status', '')} {state.get('reason', '')}".strip()
        if "problem" in item:
            rows.append([*head, item["name"], "?", "?", "?", "?", f"unreadable: {item['problem']}"])
            continue
        for backend in item["backends"]:
            rows.append(
                [
                    *head,
                    item["name"],
                    item["service"],
                    backend["service"],
                    str(backend["weight"]),
                    backend["percent"],
                    programmed,
                ]
            )
    return rows


def _read_one(api: client.ApiClient, namespace: str, name: str, version: str) -> dict[str, Any]:
    try:
        found: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
            SPLIT.group,
            version,
            namespace,
            SPLIT.plural,
            name,
            _request_timeout=connecting.REQUEST_TIMEOUT,
        )
    except client.ApiException as exc:
        if exc.status == 404:
            connecting.fail(
                f"trafficsplit {name!r} not found in namespace {namespace!r}", connecting.FAILED
            )
        raise
    return dict(found)


def _storage_version(api: client.ApiClient) -> str:
    connecting.require_reachable(api)
    try:
        return reading.storage_version(api, SPLIT)
    except reading.NotInstalledError as exc:
        connecting.fail(f"{exc}; run `kubectl smi install`", connecting.FAILED)


def get(
    name: Annotated[str | None, typer.Argument(help="One split; all if omitted.")] = None,
    namespace: connecting.Namespace = None,
    all_namespaces: connecting.AllNamespaces = False,
    output: rendering.Output = rendering.Format.table,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Show TrafficSplits: root service, backends, weights as traffic shares, Programmed.

    Weights are shown as the hub (v1alpha4) integers and as exact percentages of their sum;
    v1alpha1 Quantity weights keep their ratio ("1" and "500m" are 2:1).
    Exit code 0 when shown, 1 if NAME is not found, 2 if the cluster cannot be reached.

    Example: kubectl smi split get podinfo -n test -o json
    """
    where = connecting.namespaces(namespace, all_namespaces, kubeconfig=kubeconfig, context=context)
    if name is not None and where is None:
        connecting.fail("a NAME needs one namespace, not -A")
    with connecting.api_client(kubeconfig, context) as api:
        version = _storage_version(api)
        try:
            if name is not None and where is not None:
                raws = [_read_one(api, where, name, version)]
            else:
                raws = reading.list_raw(api, SPLIT, version, where)
        except connecting.UNREACHABLE as exc:
            connecting.fail(f"reading trafficsplits: {connecting.describe(exc)}")
    described = [describe(reading.stored(raw)) for raw in raws]
    if output is not rendering.Format.table:
        rendering.documents(described if name is None else described[0], output)
        return
    if not described:
        typer.echo(f"No trafficsplits found{f' in namespace {where}' if where else ''}.", err=True)
        return
    headers = ["name", "service", "backend", "weight", "share", "programmed"]
    rendering.table(
        ["namespace", *headers] if where is None else headers,
        _rows(described, with_namespace=where is None),
    )
    for item in described:
        if "note" in item:
            typer.echo(f"{item['namespace']}/{item['name']}: {item['note']}", err=True)


def parse_weights(pairs: list[str]) -> dict[str, int]:
    """`BACKEND=WEIGHT` arguments as a mapping; exits 2 on anything else."""
    weights: dict[str, int] = {}
    for pair in pairs:
        service, sep, text = pair.partition("=")
        if not sep or not service:
            connecting.fail(f"{pair!r} is not BACKEND=WEIGHT")
        try:
            weight = int(text)
        except ValueError:
            connecting.fail(f"{pair!r}: the weight must be a whole number, not {text!r}")
        if weight < 0:
            connecting.fail(f"{pair!r}: a weight cannot be negative")
        if weight > split.INT32_MAX:
            connecting.fail(f"{pair!r}: a weight is at most {split.INT32_MAX}")
        if service in weights:
            connecting.fail(f"backend {service!r} is given twice")
        weights[service] = weight
    return weights


def backends_patch(stored: reading.Stored, weights: dict[str, int]) -> list[dict[str, Any]]:
    """The new `spec.backends`, in the layout of the version the object is stored as."""
    if stored.hub is None:
        connecting.fail(f"trafficsplit {stored.name!r} cannot be read: {stored.problem}")
    wire = stored.hub.to_wire()
    known = [backend["service"] for backend in wire["spec"]["backends"]]
    unknown = sorted(set(weights) - set(known))
    if unknown:
        connecting.fail(
            f"trafficsplit {stored.name!r} has no backend {', '.join(map(repr, unknown))} "
            f"(its backends: {', '.join(known)})"
        )
    wire["spec"]["backends"] = [
        {**backend, "weight": weights.get(backend["service"], backend["weight"])}
        for backend in wire["spec"]["backends"]
    ]
    if sum(b["weight"] for b in wire["spec"]["backends"]) > split.MAX_WEIGHT_SUM:
        connecting.fail(f"the weights add up to more than {split.MAX_WEIGHT_SUM}")
    hub = SPLIT.hub.model_validate(wire)
    shaped = conversion.from_hub(hub, stored.shape_version).to_wire()
    backends: list[dict[str, Any]] = shaped["spec"]["backends"]
    return backends


def set_weights(
    name: Annotated[str, typer.Argument(help="The TrafficSplit.")],
    assignments: Annotated[
        list[str], typer.Argument(help="BACKEND=WEIGHT, one or more.", metavar="BACKEND=WEIGHT...")
    ],
    namespace: connecting.Namespace = None,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Set backend weights of a TrafficSplit (a manual canary step).

    Only the named backends change; the others keep their weights. Writes only
    spec.backends, with a merge patch in the version the object is stored as.
    Exit code 0 when written, 1 if the split is not found, 2 for an unknown backend,
    a negative or non-integer weight, or an unreachable cluster.

    Example: kubectl smi split set podinfo podinfo-canary=20 podinfo-primary=80 -n test
    """
    weights = parse_weights(assignments)
    where = namespace or connecting.default_namespace(kubeconfig, context)
    with connecting.api_client(kubeconfig, context) as api:
        version = _storage_version(api)
        objects = client.CustomObjectsApi(api)
        for _attempt in range(CONFLICT_RETRIES):
            raw = _read_one(api, where, name, version)
            stored = reading.stored(raw)
            patch = {
                "metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
                "spec": {"backends": backends_patch(stored, weights)},
            }
            try:
                written: Any = objects.patch_namespaced_custom_object(
                    SPLIT.group,
                    stored.shape_version,
                    where,
                    SPLIT.plural,
                    name,
                    patch,
                    field_manager=names.FIELD_MANAGER,
                    _content_type="application/merge-patch+json",
                    _request_timeout=connecting.REQUEST_TIMEOUT,
                )
            except client.ApiException as exc:
                if exc.status == 409:
                    continue  # written meanwhile (by Flagger, say): read again
                if exc.status == 422:
                    connecting.fail(f"the apiserver refused the weights: {_message(exc)}")
                connecting.fail(f"writing trafficsplit {name!r}: {connecting.describe(exc)}")
            except connecting.UNREACHABLE as exc:
                connecting.fail(f"writing trafficsplit {name!r}: {connecting.describe(exc)}")
            break
        else:
            connecting.fail(f"trafficsplit {name!r} kept changing; try again", connecting.FAILED)
    result = describe(reading.stored(written))
    parts = [f"{b['service']}={b['weight']} ({b['percent']})" for b in result["backends"]]
    typer.echo(f"trafficsplit {where}/{name} weights set: {', '.join(parts)}")


def _message(exc: client.ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def register(app_: typer.Typer) -> None:
    app.command("get")(connecting.guarded(get))
    app.command("set")(connecting.guarded(set_weights))
    app_.add_typer(app, name="split")
