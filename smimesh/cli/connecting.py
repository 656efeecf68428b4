"""The options every cluster-facing command shares (`--kubeconfig`, `--context`) and the one
way they turn into an API client.

Used by the `install`, `check`, `split`, `status` and `version` command modules; builds the
client with `smimesh.kube.clients.api_client`. A cluster that cannot be reached or configured
is exit code 2 with a one-line message, never a traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec, TypeVar

import click
import typer
import urllib3
from kubernetes import client, config

from smimesh.kube import clients

# Exit codes of every kubectl-smi command.
OK = 0
FAILED = 1
"""A check failed, or the named object does not exist."""
BAD_INPUT = 2
"""The arguments are wrong, or the cluster cannot be reached."""

# Seconds to wait for the apiserver on each request before calling it unreachable.
REQUEST_TIMEOUT = 10.0

Kubeconfig = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)."
    ),
]
Context = Annotated[
    str | None, typer.Option("--context", help="kubeconfig context (default: the current one).")
]


P = ParamSpec("P")
R = TypeVar("R")


def guarded(command: Callable[P, R]) -> Callable[P, R]:
    """`command` with any unexpected exception turned into a one-line error and exit 1: a
    user never sees a traceback (the exception's type still helps a bug report)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except UNREACHABLE as exc:
            fail(f"the Kubernetes API failed: {describe(exc)}")
        except Exception as exc:
            fail(f"unexpected {type(exc).__name__}: {exc}", FAILED)

    return run


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Print `error: message` to stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def api_client(kubeconfig: Path | None, context: str | None) -> client.ApiClient:
    """A client for the chosen cluster; exits 2 when no kubeconfig can be loaded."""
    if kubeconfig is not None and not kubeconfig.is_file():
        fail(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return clients.api_client(kubeconfig, context=context)
    except clients.NoClusterError as exc:
        fail(str(exc))


def server_version(api: client.ApiClient) -> str:
    """The apiserver's gitVersion; raises `UnreachableError` when it does not answer."""
    try:
        info = client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT)
    except UNREACHABLE as exc:
        raise UnreachableError(describe(exc)) from exc
    return str(info.git_version)


class UnreachableError(RuntimeError):
    """The apiserver did not answer (or refused our credentials)."""


UNREACHABLE = (urllib3.exceptions.HTTPError, OSError, client.ApiException)


def describe(exc: BaseException) -> str:
    """A one-line description of an API failure, for users."""
    if isinstance(exc, client.ApiException):
        return f"{exc.status} {exc.reason}".strip()
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def require_reachable(api: client.ApiClient) -> str:
    """The server version; exits 2 with a message if the apiserver cannot be reached."""
    try:
        return server_version(api)
    except UnreachableError as exc:
        host = api.configuration.host
        fail(f"cannot reach the Kubernetes API at {host}: {exc}")


Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: the context's, else default)."),
]
AllNamespaces = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
]

_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(kubeconfig: Path | None, context: str | None) -> str:
    """The namespace of the kubeconfig context (kubectl's rule), else `default`."""
    path = kubeconfig or (Path(p) if (p := os.environ.get("KUBECONFIG")) else None)
    if path is None and _IN_CLUSTER_NAMESPACE.is_file():
        return _IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    try:
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=str(path or Path.home() / ".kube" / "config")
        )
    except (config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    found = ((chosen or {}).get("context") or {}).get("namespace")
    return str(found) if found else "default"


def namespaces(
    namespace: str | None,
    all_namespaces: bool,
    *,
    kubeconfig: Path | None,
    context: str | None,
) -> str | None:
    """The namespace to list in, or None for all; exits 2 on `-n` together with `-A`."""
    if all_namespaces:
        if namespace is not None:
            fail("-n/--namespace and -A/--all-namespaces exclude each other")
        return None
    return namespace or default_namespace(kubeconfig, context)
