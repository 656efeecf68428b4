"""`smimesh conformance run` / `list` / `app`: the SMI conformance suite, on the embedded local
control plane (default), on the cluster of a kubeconfig (`--target current`, any SMI mesh by
`--mesh` profile) or on a kind cluster it makes (`--target kind`, via `kindclusters`); and the
test app the suite deploys in Pods. Registered by `smimesh.cli.main`."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smimesh.cli import kindclusters
from smimesh.conformance import deploying, profiles, reporting, running, testapp
from smimesh.testing import reaping

app = typer.Typer(help="The SMI conformance suite.", no_args_is_help=True)


class Target(enum.StrEnum):
    local = "local"
    current = "current"
    kind = "kind"


class Isolation(enum.StrEnum):
    address = "address"
    netns = "netns"


class Output(enum.StrEnum):
    text = "text"
    json = "json"
    junit = "junit"
    markdown = "markdown"


@app.command("list")
def list_cases() -> None:
    """List the cases: name, spec version checked, and what each proves.

    Example: smimesh conformance list
    """
    for item in running.select(()):
        typer.echo(f"{item.name}  [{item.spec}]  ({item.origin})\n    {item.description}")


@app.command("run")
def run(
    focus: Annotated[
        list[str] | None,
        typer.Option("--focus", "-f", help="Run only cases whose name contains this (repeatable)."),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", help="Leave out cases whose name contains this (repeatable)."),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="What to print at the end.")
    ] = Output.text,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write a report: .json, .xml (JUnit) or .md (Markdown)."),
    ] = None,
    target: Annotated[
        Target,
        typer.Option(
            help="local: the embedded control plane (etcd + kube-apiserver as processes), "
            "the operator and the test app as local workloads. current: the mesh already "
            "running in the cluster of --kubeconfig/--context, the test app as Pods. kind: a "
            "kind cluster made (or reused) with smimesh installed, then as current."
        ),
    ] = Target.local,
    mesh: Annotated[
        str,
        typer.Option(
            help="The mesh under test (current): how its namespaces and pods opt in and "
            f"keep the suite's control port out: {', '.join(profiles.PROFILES)}.",
        ),
    ] = "smimesh",
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            help="kubeconfig for --target current (default: $KUBECONFIG, ~/.kube/config)."
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option(help="kubeconfig context (default: the current one).")
    ] = None,
    image: Annotated[
        str, typer.Option(help="The image the test-app Pods run (smimesh conformance app).")
    ] = deploying.DEFAULT_IMAGE,
    keep: Annotated[
        bool, typer.Option(help="Leave the test app's namespaces in the cluster afterwards.")
    ] = False,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the test-app Pods to be Ready.")
    ] = 300.0,
    isolation: Annotated[
        Isolation,
        typer.Option(
            help="local: how the test apps run. address: an address of their own, the app "
            "calling through its sidecar as HTTP proxy. netns: a network namespace each, "
            "traffic intercepted transparently by iptables (needs root)."
        ),
    ] = Isolation.address,
    keep_logs: Annotated[
        bool, typer.Option("--keep-logs", envvar=reaping.KEEP_LOGS_ENV, help=reaping.KEEP_LOGS_HELP)
    ] = False,
) -> None:
    """Run the conformance cases; exit 0 if all pass (or skip), 1 if any fails, 2 on bad input
    or when the suite cannot start (unreachable cluster, no SMI CRDs, Pods never Ready, no
    Docker for kind).

    The first local run on a machine builds kube-apiserver with Go (minutes).

    A case the mesh cannot be graded on (OSM has no per-namespace permissive mode) skips.

    Pods serve the suite on port 9090 (out of the mesh), via the apiserver's pod proxy.

    Examples:

      smimesh conformance run --focus split/ --skip flagger --report smi.md

      smimesh conformance run --isolation netns --report smi.json

      smimesh conformance run --target current --mesh osm --context my-cluster -o junit

      smimesh conformance run --target kind --image ghcr.io/smimesh/smimesh:0.1.0
    """
    err = Console(stderr=True)
    reaping.keep_logs(keep_logs)
    chosen = running.select(focus or (), skip or ())
    if not chosen:
        err.print(
            f"[red]no case matches --focus {focus} --skip {skip}; see `smimesh conformance list`[/]"
        )
        raise typer.Exit(2)
    try:
        profile = profiles.lookup(mesh)
    except ValueError as exc:
        err.print(f"[red]--mesh: {exc}[/]")
        raise typer.Exit(2) from None
    if target is not Target.local and isolation is not Isolation.address:
        err.print("[red]--isolation applies to --target local only[/]")
        raise typer.Exit(2)
    if target is not Target.current and profile.name != "smimesh":
        err.print(
            f"[red]--target {target} runs smimesh; to grade {mesh}, install it in a cluster "
            "and use --target current[/]"
        )
        raise typer.Exit(2)
    if report is not None:
        try:
            suffix = reporting.for_path(report.name)
        except ValueError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None

    def progress(result: running.Result) -> None:
        # A line per case as it ends: on stdout for text, on stderr beside a JSON/XML result.
        typer.echo(reporting.line(result), err=output is not Output.text)

    def say(message: str) -> None:
        err.print(f"[dim]{message}[/]", highlight=False)

    try:
        if target is Target.local:
            results = running.run_local(
                chosen, isolation=isolation.value, say=say, on_result=progress
            )
        else:
            if target is Target.kind:
                kubeconfig, context = kindclusters.prepare(image, say=say), None
            cluster = running.connect(kubeconfig, context, say=say)
            results = running.run_current(
                chosen,
                cluster,
                mesh=profile,
                image=image,
                keep=keep,
                ready_timeout=ready_timeout,
                say=say,
                on_result=progress,
            )
    except (running.SetupError, kindclusters.KindUnavailableError) as exc:
        err.print(f"[red]✖ the suite could not start: {exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except typer.Exit:
        raise
    except Exception as exc:  # set-up failures are reported, never a traceback
        err.print(f"[red]✖ the suite could not start: {type(exc).__name__}: {exc}[/]")
        raise typer.Exit(2) from None
    rendered = {
        Output.text: reporting.summary,
        Output.json: reporting.as_json,
        Output.junit: reporting.as_junit,
        Output.markdown: reporting.as_markdown,
    }[output](results)
    typer.echo(rendered)
    if report is not None:
        report.write_text(reporting.FORMATS[suffix](results) + "\n")
        err.print(f"report written to {report}")
    raise typer.Exit(0 if all(r.outcome in running.SUCCESSFUL for r in results) else 1)


@app.command("app")
def serve_app(
    host: Annotated[str, typer.Option(envvar="HOST", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PORT", help="The mesh port (Services').")] = 8080,
    control_port: Annotated[
        int | None,
        typer.Option(
            envvar="CONTROL_PORT",
            help="Also serve here: the suite's own port, excluded from interception.",
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(envvar="SMIMESH_WORKLOAD", help="namespace/pod, sent to callees.")
    ] = "testapp",
    failures: Annotated[
        float,
        typer.Option(envvar="SMIMESH_APP_FAILURES", min=0.0, max=1.0,
                     help="A bad release: answer this share of mesh-port requests with 500."),
    ] = 0.0,
    delay_ms: Annotated[
        float,
        typer.Option(envvar="SMIMESH_APP_DELAY_MS", min=0.0,
                     help="A slow release: delay every mesh-port answer by this much."),
    ] = 0.0,
    load_url: Annotated[
        str | None,
        typer.Option(envvar="SMIMESH_LOAD_URL",
                     help="Be a load generator: call this URL steadily (tallied on /metrics)."),
    ] = None,
    load_rps: Annotated[
        float, typer.Option(envvar="SMIMESH_LOAD_RPS", min=0.1, help="Calls a second.")
    ] = 20.0,
    load_workers: Annotated[
        int,
        typer.Option(envvar="SMIMESH_LOAD_WORKERS", min=1, max=testapp.MAX_WORKERS,
                     help="Threads sharing the rate (a slow answer delays only its own)."),
    ] = 4,
) -> None:  # fmt: skip
    """Run the conformance test app (what the suite's Pods run from the smimesh image).

    It answers /echo, makes calls on POST /call and counts what it received on /metrics.
    The canary tests also make it a bad release (--failures, --delay-ms) or the load
    generator inside the mesh (--load-url).

    Examples: smimesh conformance app --port 8080 --control-port 9090
              smimesh conformance app --failures 0.3          # 30 % of answers are 500
              smimesh conformance app --load-url http://web.test/echo --load-rps 20
    """
    faults = testapp.Faults(failures, delay_ms / 1000) if failures or delay_ms else None
    load = testapp.Load(load_url, load_rps, load_workers) if load_url else None
    testapp.run(host, port, name, control_port=control_port, faults=faults, load=load)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="conformance")
