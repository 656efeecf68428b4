"""Packs the last stage's rootfs into an OCI image layout with umoci: one gzip layer and the
config the Dockerfile set (Env, User, WorkingDir, Cmd, Labels, ExposedPorts).

Called by `building` once all steps ran; `Packed` says where the layout is and how big the
image is. The layout is what `skopeo copy oci:<path>:<tag> docker://...`, `umoci unpack`
and `buildah push` read (docs/image.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from smimesh.testing import reaping
from smimesh.testing.meshimage import failures


@dataclass(frozen=True)
class ImageConfig:
    env: Mapping[str, str]
    user: str
    workdir: str
    cmd: Sequence[str] | None
    labels: Mapping[str, str]
    exposed: Sequence[str]


@dataclass(frozen=True)
class Packed:
    layout: Path
    tag: str
    compressed_bytes: int
    unpacked_bytes: int

    @property
    def reference(self) -> str:
        """As skopeo and umoci name it."""
        return f"{self.layout}:{self.tag}"

    def save(self) -> None:
        (self.layout / "meshimage.json").write_text(
            json.dumps(
                {
                    "tag": self.tag,
                    "compressed_bytes": self.compressed_bytes,
                    "unpacked_bytes": self.unpacked_bytes,
                }
            )
        )

    @classmethod
    def load(cls, layout: Path) -> Packed | None:
        """The record `save` left, or None for a layout that was never finished."""
        try:
            data = json.loads((layout / "meshimage.json").read_text())
        except (OSError, ValueError):
            return None
        return cls(layout, data["tag"], data["compressed_bytes"], data["unpacked_bytes"])


def umoci() -> str:
    path = shutil.which("umoci")
    if path is None:
        raise failures.BuildError("umoci is not installed: run `make image-deps`")
    return path


def _run(argv: Sequence[str], what: str) -> None:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, check=False, preexec_fn=reaping.die_with_parent
    )
    if result.returncode != 0:
        raise failures.BuildError(f"{what} failed (exit {result.returncode}): {result.stderr}")


def pack(rootfs: Path, config: ImageConfig, *, layout: Path, tag: str) -> Packed:
    """Write the OCI layout at `layout` (replacing a half-written one)."""
    tool = umoci()
    shutil.rmtree(layout, ignore_errors=True)
    layout.parent.mkdir(parents=True, exist_ok=True)
    image = f"{layout}:{tag}"
    _run([tool, "init", "--layout", str(layout)], "umoci init")
    _run([tool, "new", "--image", image], "umoci new")
    layer = layout.parent / f"{layout.name}.layer.tar"
    try:
        _run(
            [
                "tar",
                "--numeric-owner",
                "--xattrs",
                "--sort=name",
                "-C",
                str(rootfs),
                "-cf",
                str(layer),
                ".",
            ],
            "tar of the rootfs",
        )
        unpacked = layer.stat().st_size
        _run(
            [
                tool,
                "raw",
                "add-layer",
                "--history.created_by",
                "meshimage: the stages",
                "--image",
                image,
                str(layer),
            ],
            "umoci raw add-layer",
        )
    finally:
        layer.unlink(missing_ok=True)
    options = [
        "--clear=config.env",
        "--clear=config.cmd",
        "--clear=config.labels",
        "--clear=config.exposedports",
        "--config.user",
        config.user or "0",
        "--config.workingdir",
        config.workdir or "/",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]
    options += [f"--config.env={key}={value}" for key, value in config.env.items()]
    options += [f"--config.label={key}={value}" for key, value in config.labels.items()]
    options += [f"--config.exposedports={_port(port)}" for port in config.exposed]
    options += [f"--config.cmd={part}" for part in config.cmd or ()]
    _run([tool, "config", "--no-history", "--image", image, *options], "umoci config")
    _run([tool, "gc", "--layout", str(layout)], "umoci gc")
    packed = Packed(layout, tag, compressed_size(layout, tag), unpacked)
    packed.save()
    return packed


def _port(port: str) -> str:
    return port if "/" in port else f"{port}/tcp"


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, value = digest.partition(":")
    return layout / "blobs" / algorithm / value


def manifest(layout: Path, tag: str) -> dict[str, object]:
    """The image manifest the layout's index names with `tag`."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            loaded: dict[str, object] = json.loads(_blob(layout, entry["digest"]).read_text())
            return loaded
    raise failures.BuildError(f"{layout} has no image tagged {tag}")


def image_config(layout: Path, tag: str) -> dict[str, object]:
    """The OCI image config (its `config` holds Env, User, Cmd, ...)."""
    descriptor = manifest(layout, tag)["config"]
    assert isinstance(descriptor, dict)
    loaded: dict[str, object] = json.loads(_blob(layout, descriptor["digest"]).read_text())
    return loaded


def compressed_size(layout: Path, tag: str) -> int:
    layers = manifest(layout, tag)["layers"]
    assert isinstance(layers, list)
    return sum(int(layer["size"]) for layer in layers)
