"""`kubectl smi status`: every SMI object with the conditions the operator wrote.

Registered by `smimesh.cli.main`. Lists each SMI kind whose CRD is installed (in its storage
version, through `smimesh.cli.reading`) and shows `status.conditions` — Accepted,
ResolvedRefs, Programmed, as `smimesh.operator.statuses` writes them — as a table, JSON or
YAML. A condition the operator has not written yet shows as `-`.
"""

from __future__ import annotations

from typing import Any

import typer

from smimesh.cli import connecting, reading, rendering

CONDITIONS = ("Accepted", "ResolvedRefs", "Programmed")


def _summary(conditions: list[dict[str, Any]]) -> tuple[list[str], str]:
    by_type = {c.get("type"): c for c in conditions}
    cells = [
        str(by_type[kind].get("status", "?")) if kind in by_type else "-" for kind in CONDITIONS
    ]
    failing = [
        f"{c.get('type')}: {c.get('reason', '')}"
        + (f" ({c['message']})" if c.get("message") else "")
        for c in conditions
        if c.get("status") != "True"
    ]
    return cells, "; ".join(failing)


def status(
    namespace: connecting.Namespace = None,
    all_namespaces: connecting.AllNamespaces = False,
    output: rendering.Output = rendering.Format.table,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Show every SMI object (splits, targets, routes) with its status conditions.

    Conditions are written by the operator: Accepted (valid), ResolvedRefs (every
    reference exists), Programmed (every connected proxy has the config).
    Exit code 0 when shown, 2 if the cluster cannot be reached.

    Example: kubectl smi status -A -o yaml
    """
    where = connecting.namespaces(namespace, all_namespaces, kubeconfig=kubeconfig, context=context)
    items: list[dict[str, Any]] = []
    missing: list[str] = []
    with connecting.api_client(kubeconfig, context) as api:
        connecting.require_reachable(api)
        for info in reading.CRD_KINDS:
            try:
                version = reading.storage_version(api, info)
                raws = reading.list_raw(api, info, version, where)
            except reading.NotInstalledError:
                missing.append(info.crd_name)
                continue
            except connecting.UNREACHABLE as exc:
                connecting.fail(f"listing {info.plural}: {connecting.describe(exc)}")
            for raw in raws:
                meta = raw.get("metadata", {})
                conditions = reading.conditions(raw)
                items.append(
                    {
                        "kind": info.kind,
                        "apiVersion": raw.get("apiVersion"),
                        "namespace": meta.get("namespace", ""),
                        "name": meta.get("name", ""),
                        "conditions": [
                            {
                                k: c[k]
                                for k in (
                                    "type",
                                    "status",
                                    "reason",
                                    "message",
                                    "observedGeneration",
                                )
                                if k in c
                            }
                            for c in conditions
                        ],
                    }
                )
    for crd in missing:
        typer.echo(f"note: the CRD {crd} is not installed", err=True)
    if output is not rendering.Format.table:
        rendering.documents(items, output)
        return
    if not items:
        typer.echo(f"No SMI objects found{f' in namespace {where}' if where else ''}.", err=True)
        return
    rows = []
    for item in items:
        cells, problems = _summary(item["conditions"])
        head = [item["namespace"]] if where is None else []
        rows.append([*head, item["kind"], item["name"], *cells, problems])
    headers = ["kind", "name", *CONDITIONS, "problems"]
    rendering.table(["namespace", *headers] if where is None else headers, rows)


def register(app: typer.Typer) -> None:
    app.command("status")(connecting.guarded(status))
