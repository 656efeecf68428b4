"""`kubectl smi install` and `kubectl smi uninstall`: apply (or delete) the rendered
smimesh/manifests/ kustomization server-side, as field manager `smimesh`.

Registered by `smimesh.cli.main`. The install itself is `smimesh.kube.installing`, the same
path the tests' local meshes take; this module adds the options, one line of output per
object and the exit codes, and talks to the apiserver through a dynamic client built on
`smimesh.cli.connecting`. `--dry-run` asks the apiserver to check every write without
persisting it; `--render` prints the YAML and contacts nothing; `--image` runs another
operator image and `--wait` waits for the operator's rollout, saying each step. docs/install.md
says what install and uninstall leave.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from kubernetes import dynamic

from smimesh.cli import connecting
from smimesh.kube import installing, names, rollouts

Manifests = Annotated[
    Path | None,
    typer.Option(
        "--manifests",
        help="A kustomization directory (default: the one shipped in the package).",
    ),
]
MeshNamespace = Annotated[
    str, typer.Option("--namespace", "-n", help="The mesh namespace to install into.")
]
Ha = Annotated[
    bool, typer.Option("--ha", help="Two operator replicas on different nodes (overlays/ha).")
]
Image = Annotated[
    str,
    typer.Option(
        "--image", help="The operator image (default: this version's, see docs/image.md)."
    ),
]
Wait = Annotated[
    bool,
    typer.Option("--wait", help="Wait until the operator Deployment has rolled out."),
]
Timeout = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds --wait waits before it fails.")
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Let the apiserver check every write; persist nothing.")
]


def rendered(
    manifests: Path | None, *, ha: bool, namespace: str, image: str = installing.DEFAULT_IMAGE
) -> list[dict[str, Any]]:
    """The objects to install; exits 2 if the manifests cannot be found or rendered."""
    try:
        objects = installing.rendered(manifests, ha=ha, namespace=namespace)
        if image == installing.DEFAULT_IMAGE:
            return objects
        return installing.with_image(objects, image)
    except installing.NoManifestsError as exc:
        connecting.fail(f"{exc}; pass --manifests DIR")
    except installing.InstallError as exc:
        connecting.fail(str(exc))


def _dynamic(kubeconfig: Path | None, context: str | None) -> dynamic.DynamicClient:
    api = connecting.api_client(kubeconfig, context)
    connecting.require_reachable(api)
    try:
        return dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    except connecting.UNREACHABLE as exc:
        connecting.fail(f"API discovery failed: {connecting.describe(exc)}")


LINES = {
    "applied": "✔ {what} applied{suffix}",
    "unchecked": "- {what}: not checked (its namespace is not created yet)",
    "deleted": "✔ {what} deleted{suffix}",
    "gone": "- {what}: already gone",
    "kept": "- {what}: kept (pass --crds to delete it)",
}
"""The line for each outcome but `refused`, which goes to stderr with the apiserver's reason."""


def _report(steps: Iterator[installing.Step], order: Sequence[dict[str, Any]], suffix: str) -> int:
    """Print a line per step; the number refused. `order` is the objects in the order of the
    steps, to name the one in flight when the apiserver stops answering (exit 2)."""
    failed = done = 0
    try:
        for step in steps:
            done += 1
            what = installing.label(step.obj)
            if step.outcome == "refused":
                typer.echo(f"✖ {what}: {step.message}", err=True)
                failed += 1
            else:
                typer.echo(LINES[step.outcome].format(what=what, suffix=suffix))
    except connecting.UNREACHABLE as exc:
        connecting.fail(f"{installing.label(order[done])}: {connecting.describe(exc)}")
    return failed


def install(
    dry_run: DryRun = False,
    namespace: MeshNamespace = names.MESH_NAMESPACE,
    ha: Ha = False,
    render: Annotated[
        bool, typer.Option("--render", help="Print the manifests as YAML; contact no cluster.")
    ] = False,
    manifests: Manifests = None,
    image: Image = installing.DEFAULT_IMAGE,
    wait: Wait = False,
    timeout: Timeout = 300,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Install smimesh: namespace, SMI CRDs, RBAC, operator Deployment, Service and PDB.

    Renders the smimesh/manifests/ kustomization (overlays/ha with --ha) and applies every object
    server-side as field manager "smimesh", taking over fields other managers set.
    Running it again upgrades in place. With --wait it returns once the operator Deployment
    has rolled out. Exit code 0 when applied, 1 if the apiserver refused an object or the
    rollout failed or timed out, 2 for bad arguments or an unreachable cluster.

    Example: kubectl smi install --dry-run && kubectl smi install --ha --wait
    """
    if wait and (dry_run or render):
        connecting.fail("--wait waits for a real install: drop --dry-run and --render")
    objects = rendered(manifests, ha=ha, namespace=namespace, image=image)
    if render:
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True), nl=False)
        return
    api = _dynamic(kubeconfig, context)
    suffix = " (server dry run)" if dry_run else ""
    failed = _report(installing.apply(api, objects, dry_run=dry_run), objects, suffix)
    if failed:
        connecting.fail(f"{failed} of {len(objects)} objects were refused", connecting.FAILED)
    if not dry_run:
        try:
            installing.wait_established(api, objects)
            if wait:
                typer.echo(f"waiting for deployment/{namespace}/{names.OPERATOR_DEPLOYMENT}")
                rollouts.wait_rollout(
                    api, namespace, timeout=timeout, say=lambda text: typer.echo(f"  {text}")
                )
        except (installing.InstallError, rollouts.RolloutError) as exc:
            connecting.fail(str(exc), connecting.FAILED)
        except connecting.UNREACHABLE as exc:
            connecting.fail(f"waiting for the install: {connecting.describe(exc)}")
    typer.echo(
        f"{len(objects)} objects {'checked' if dry_run else 'applied'} in {namespace}; "
        "next: kubectl smi check"
    )


def uninstall(
    dry_run: DryRun = False,
    namespace: MeshNamespace = names.MESH_NAMESPACE,
    crds: Annotated[
        bool,
        typer.Option(
            "--crds", help="Also delete the SMI CRDs, and with them every SMI object (!)."
        ),
    ] = False,
    manifests: Manifests = None,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Remove what `install` created, in reverse order, and the trust-bundle ConfigMaps the
    operator wrote into meshed namespaces.

    The SMI CRDs stay unless --crds is given: deleting them deletes every TrafficSplit,
    TrafficTarget and route in the cluster, including those Flagger or Argo Rollouts own.
    The mesh namespace goes last, and with it the CA Secret and the leader Lease; labels
    and annotations you put on your own namespaces and workloads stay.
    Exit code 0 when deleted (or already gone), 1 if a deletion was refused, 2 for bad
    arguments or an unreachable cluster.

    Example: kubectl smi uninstall --dry-run
    """
    objects = rendered(manifests, ha=False, namespace=namespace)
    api = _dynamic(kubeconfig, context)
    suffix = " (server dry run)" if dry_run else ""
    try:
        made = installing.leftovers(api, objects)
    except connecting.UNREACHABLE as exc:
        connecting.fail(f"listing the trust bundles: {connecting.describe(exc)}")
    order = [*made, *objects]  # deleted in reverse: the trust bundles after the operator
    steps = installing.delete(api, order, dry_run=dry_run, crds=crds)
    failed = _report(steps, order[::-1], suffix)
    if failed:
        connecting.fail(f"{failed} deletions were refused", connecting.FAILED)


def register(app: typer.Typer) -> None:
    app.command("install")(connecting.guarded(install))
    app.command("uninstall")(connecting.guarded(uninstall))
