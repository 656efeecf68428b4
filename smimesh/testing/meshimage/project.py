"""The smimesh image of a source tree, as `make image` builds it: the wheels of `build/wheels`
(`wheelhouse`), then the Dockerfile (`building`), cached under the cache root.

For tests that need the image itself (`tests/testing/meshimage/`) or on the real node
(`tests/testing/test_mesh_on_node.py`); the CLI (`__main__`) does the same with options.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import smimesh
from smimesh.kube import names
from smimesh.testing import gotools
from smimesh.testing.meshimage import building, packing, wheelhouse

IMAGE = f"{names.IMAGE_REPOSITORY}:{smimesh.__version__}"
"""The name the manifests and the injector use for this version's image."""


def project_image(root: Path, *, say: Callable[[str], None] = gotools.say) -> packing.Packed:
    """The image of the tree at `root`, tagged with the package version; built if its inputs
    changed since the last build."""
    started = time.monotonic()
    wheelhouse.ensure_wheels(root, say=say)
    request = building.Request(root / "Dockerfile", root, smimesh.__version__)
    packed = building.build(request, cache=gotools.cache_root() / "image", say=say)
    say(f"image ready in {time.monotonic() - started:.1f}s: {packed.reference}")
    return packed
