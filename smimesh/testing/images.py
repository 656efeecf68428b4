"""OCI images for the real test node, built without a Docker daemon and imported into its
containerd, so that no Pod ever pulls from a registry.

- the sandbox image: the static program of `hack/pause`, built with Go (`gotools.run_go`)
  and packed with umoci, imported as `registry.k8s.io/pause:<PAUSE_VERSION>` (the name the
  node's containerd is configured to run sandboxes from);
- the test image: a Debian minbase root file system from mmdebstrap with curl, iptables,
  iproute2, busybox (an HTTP server, nc) and CA certificates, imported as `TEST_IMAGE`.

Both are OCI archives cached under `<cache root>/image/`, named by a hash of their inputs (a
changed recipe builds anew). `import_image` gives an image the full name the kubelet asks for
(`docker.io/library/x:tag` for a short `x:tag`). Used by `smimesh.testing.nodes`; Pods use
`imagePullPolicy: Never` or `IfNotPresent`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from smimesh.testing import gotools

PAUSE_VERSION = "3.10.1"
"""The sandbox image's tag (kubelet v1.36's default sandbox image)."""
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_VERSION}"
TEST_IMAGE = "smimesh.local/node-test:1"
"""Pods of the node tests run this; the name is local, never pulled."""
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
TEST_PACKAGES = ("curl", "iptables", "iproute2", "busybox", "ca-certificates")
RECIPE = "1"
"""Bumped when the way an image is made changes, so older archives are not reused."""
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(RuntimeError):
    """An image cannot be built or imported; the message says why and what to do."""


def full_name(name: str) -> str:
    """The reference the kubelet asks containerd for: `x:tag` is `docker.io/library/x:tag`,
    `org/x:tag` is `docker.io/org/x:tag`; a name with a registry stays as it is."""
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if slash else f"docker.io/library/{name}"


def _run(argv: Sequence[str], *, what: str) -> None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ImageError(f"{argv[0]} is missing (needed to {what}); run `make node-deps`") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ImageError(f"could not {what}: `{' '.join(argv[:3])} ...` failed:\n{tail}")


def _cached(name: str, inputs: bytes) -> Path:
    digest = hashlib.sha256(RECIPE.encode() + b"\0" + inputs).hexdigest()[:16]
    return gotools.cache_root() / "image" / f"{name}-{digest}.tar"


def _pack(archive: Path, fill: Callable[[Path], None], *, config: Sequence[str], what: str) -> Path:
    """An OCI archive at `archive`: umoci's empty image, `fill(rootfs)`, repacked, with the
    `umoci config` options `config`. Built beside the cache and moved in when complete."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".image-", dir=archive.parent) as scratch:
        layout, bundle = Path(scratch, "layout"), Path(scratch, "bundle")
        image = f"{layout}:latest"
        _run(["umoci", "init", "--layout", str(layout)], what=f"start {what}")
        _run(["umoci", "new", "--image", image], what=f"start {what}")
        _run(["umoci", "unpack", "--image", image, str(bundle)], what=f"unpack {what}")
        fill(bundle / "rootfs")
        _run(["umoci", "repack", "--image", image, str(bundle)], what=f"pack {what}")
        _run(["umoci", "config", "--image", image, *config], what=f"configure {what}")
        _run(["umoci", "gc", "--layout", str(layout)], what=f"pack {what}")
        partial = archive.with_suffix(".partial")
        _run(["tar", "-C", str(layout), "-cf", str(partial), "."], what=f"archive {what}")
        partial.replace(archive)
    return archive


def _source_tree() -> Path:
    return Path(__file__).resolve().parents[2]


def pause_archive(*, say: Callable[[str], None] = gotools.say) -> Path:
    """The sandbox image as an OCI archive, built once per recipe."""
    module = _source_tree() / "hack" / "pause"
    if not (module / "main.go").is_file():
        raise ImageError(f"the pause program's source is not at {module}; run from a checkout")
    archive = _cached("pause", (module / "main.go").read_bytes())
    if archive.is_file():
        return archive
    go = gotools.go_executable("the pause image", archive.parent)
    with tempfile.TemporaryDirectory(prefix="smimesh-pause-") as build:
        binary = Path(build, "pause")
        gotools.run_go([go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."],
                       cwd=module, what="pause", say=say, env={"CGO_ENABLED": "0"})  # fmt: skip

        def fill(rootfs: Path) -> None:
            shutil.copy2(binary, rootfs / "pause")

        return _pack(
            archive, fill, config=["--config.entrypoint", "/pause"], what="the pause image"
        )


def node_test_archive(*, say: Callable[[str], None] = gotools.say) -> Path:
    """The test image as an OCI archive, built once per recipe (mmdebstrap: a few minutes)."""
    inputs = "\n".join([SUITE, MIRROR, *TEST_PACKAGES]).encode()
    archive = _cached("node-test", inputs)
    if archive.is_file():
        return archive
    say(f"building the test image ({SUITE} minbase + {', '.join(TEST_PACKAGES)}) with mmdebstrap "
        "(once per machine; a few minutes)")  # fmt: skip

    def fill(rootfs: Path) -> None:
        excluded = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale")]
        packages = f"--include={','.join(TEST_PACKAGES)}"
        argv = ["mmdebstrap", "--quiet", "--variant=minbase", packages, *excluded, SUITE,
                str(rootfs), MIRROR]  # fmt: skip
        _run(argv, what="build the test image's root file system")

    config = ["--config.env", _PATH, "--config.cmd", "sleep", "--config.cmd", "infinity"]
    built = _pack(archive, fill, config=config, what="the test image")
    say(f"built the test image: {built} ({built.stat().st_size // 2**20} MiB)")
    return built


def import_image(ctr: Sequence[str], archive: Path, name: str) -> None:
    """Import an OCI archive of ours (one image, tagged `latest`) into containerd's `k8s.io`
    namespace as `name`, fully qualified as the kubelet will ask for it. `ctr` is the
    command that reaches the node's containerd (`ctr --address SOCK`)."""
    reference = full_name(name)
    base, _, tag = reference.rpartition(":")
    if "/" in tag or not base:
        raise ImageError(f"image name {name!r} needs a tag")
    tagged = _tagged(archive, tag)
    _run([*ctr, "--namespace", "k8s.io", "images", "import", "--base-name", base, "--digests",
          str(tagged)], what=f"import {reference} into containerd")  # fmt: skip


def import_layout(ctr: Sequence[str], layout: Path, name: str) -> None:
    """Import the image tagged as `name`'s tag in an OCI layout (the smimesh image from
    `smimesh.testing.meshimage`) into containerd's `k8s.io` namespace as `name`."""
    reference = full_name(name)
    base, _, tag = reference.rpartition(":")
    if "/" in tag or not base:
        raise ImageError(f"image name {name!r} needs a tag")
    with tempfile.TemporaryDirectory(prefix=".import-", dir=layout.parent) as scratch:
        archive = Path(scratch, "layout.tar")
        _run(["tar", "-C", str(layout), "-cf", str(archive), "--exclude=./meshimage.json", "."],
             what=f"archive {layout}")  # fmt: skip
        _run([*ctr, "--namespace", "k8s.io", "images", "import", "--base-name", base,
              "--digests", str(archive)],
             what=f"import {reference} into containerd")  # fmt: skip


def _tagged(archive: Path, tag: str) -> Path:
    """The archive with its image tagged `tag` instead of `latest` (ctr names an imported
    OCI image `<base-name>:<its tag>`), made once beside it."""
    tagged = archive.with_name(f"{archive.stem}.{tag}.tar")
    if tagged.is_file() and tagged.stat().st_mtime >= archive.stat().st_mtime:
        return tagged
    with tempfile.TemporaryDirectory(prefix=".tag-", dir=archive.parent) as scratch:
        layout = Path(scratch, "layout")
        layout.mkdir()
        _run(["tar", "-C", str(layout), "-xf", str(archive)], what=f"read {archive}")
        _run(["umoci", "tag", "--image", f"{layout}:latest", tag], what=f"tag {archive.name}")
        _run(["umoci", "rm", "--image", f"{layout}:latest"], what=f"tag {archive.name}")
        partial = Path(scratch, "tagged.tar")
        _run(["tar", "-C", str(layout), "-cf", str(partial), "."], what=f"archive {tagged}")
        partial.replace(tagged)
    return tagged


def main() -> int:
    """`python -m smimesh.testing.images`: build both archives; print their paths."""
    try:
        for archive in (pause_archive(), node_test_archive()):
            print(archive)
    except (ImageError, gotools.GoToolError) as exc:
        gotools.say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
