"""`kubectl smi inject -f FILE|DIR|-`: add the smimesh sidecar to manifests, offline.

Registered by `smimesh.cli.main`. Reads YAML or JSON with `inputs` (multi-document, `-` for
stdin, directories recursively), runs the same builder as the mutating webhook
(`smimesh.webhooks.injection.workloads`) on every document, writes YAML to stdout and reports
each object to stderr. All or nothing: if any object cannot be injected, stdout stays empty.
Exit 0: done; 1: some object cannot be injected; 2: some input unreadable.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer
import yaml

from smimesh.cli import inputs
from smimesh.webhooks.injection import errors, settings, workloads


class UnreadableError(Exception):
    """An input cannot be read or is not Kubernetes YAML; the message names the file."""


def _documents(label: str, text: str) -> list[dict[str, Any]]:
    try:
        loaded = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as exc:
        raise UnreadableError(f"{label}: not valid YAML: {exc}") from None
    for index, document in enumerate(loaded, start=1):
        if not isinstance(document, dict) or "kind" not in document:
            raise UnreadableError(
                f"{label}: document {index} is not a Kubernetes object (no 'kind')"
            )
    return loaded


def run(
    paths: list[str], *, config: settings.InjectionSettings, namespace: str | None
) -> tuple[list[dict[str, Any]], list[workloads.Report], list[str]]:
    """(output documents, report lines, errors) for every document of every path."""
    outputs: list[dict[str, Any]] = []
    reports: list[workloads.Report] = []
    failures: list[str] = []
    read = inputs.read(paths)
    for unreadable in read:  # all or nothing: nothing is injected if any input is unreadable
        if unreadable.text is None:
            raise UnreadableError(f"{unreadable.label}: {unreadable.error}")
    for source in read:
        label = source.label
        for index, document in enumerate(_documents(label, source.text or ""), start=1):
            try:
                injected, found = workloads.inject_manifest(
                    document, config=config, namespace=namespace
                )
            except errors.InjectionError as exc:
                failures.append(f"{label}: document {index}: {exc}")
                continue
            outputs.append(injected)
            reports += found
    return outputs, reports, failures


def inject(
    filenames: Annotated[
        list[str],
        typer.Option("--filename", "-f", help="File or directory of YAML/JSON; - for stdin."),
    ],
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="Namespace of objects that name none (for the skip rules)."
        ),
    ] = None,
    native_sidecars: Annotated[
        bool,
        typer.Option(
            "--native-sidecars/--no-native-sidecars",
            help="Proxy as a restartable init container (Kubernetes >= 1.29), "
            "else as the first container.",
        ),
    ] = True,
    cni: Annotated[
        bool, typer.Option("--cni", help="A CNI plugin intercepts traffic: no iptables init.")
    ] = False,
    proxy_image: Annotated[
        str | None, typer.Option("--proxy-image", help="The sidecar image to inject.")
    ] = None,
) -> None:
    """Add the smimesh sidecar to the pods of manifests and print them as YAML.

    Handles Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
    ReplicationControllers, Jobs, CronJobs and Lists; other kinds pass
    through unchanged. Skipped: pods annotated smimesh.dev/inject=disabled,
    hostNetwork pods and the mesh namespace. Injecting twice changes nothing.
    What happened to each object is reported on stderr.

    Exit code 0 when done; 1 if an object cannot be injected (then nothing
    is printed); 2 if an input cannot be read.

    Example: kubectl smi inject -f deploy.yaml | kubectl apply -f -
    """
    config = settings.InjectionSettings(native_sidecars=native_sidecars, cni_mode=cni)
    if proxy_image:
        config = replace(config, proxy_image=proxy_image)
    try:
        outputs, reports, failures = run(filenames, config=config, namespace=namespace)
    except UnreadableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # never a traceback for the user; the type helps a bug report
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    if failures:
        for failure in failures:
            typer.echo(f"error: {failure}", err=True)
        typer.echo("nothing written: fix the objects above and run again", err=True)
        raise typer.Exit(1)
    if outputs:
        typer.echo(yaml.safe_dump_all(outputs, sort_keys=False, explicit_start=True), nl=False)
    for report in reports:
        typer.echo(str(report), err=True)
    injected = sum(report.action == "injected" for report in reports)
    typer.echo(f"{injected} of {len(reports)} objects injected", err=True)


def register(app: typer.Typer) -> None:
    app.command("inject")(inject)
