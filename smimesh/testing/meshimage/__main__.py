"""`python -m smimesh.testing.meshimage`: build the smimesh image from the Dockerfile without
a Docker daemon (`make image`), print the OCI layout, the image name and its sizes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import smimesh
from smimesh.kube import names
from smimesh.testing import gotools
from smimesh.testing.meshimage import building, failures, wheelhouse

MIB = 1024 * 1024

DESCRIPTION = """\
Build an image by following a Dockerfile (FROM, ARG, ENV, WORKDIR, COPY [--from], RUN, SHELL,
USER, LABEL, EXPOSE, CMD) without a Docker daemon: Debian bases from mmdebstrap, each RUN
chrooted in its own namespaces (no network but for apt-get), the result packed with umoci
as an OCI layout under ~/.cache/smimesh/image/ ($SMIMESH_CACHE). Needs root and
mmdebstrap, umoci (`make image-deps`). A rebuild with unchanged inputs is a cache hit.
"""

EPILOG = """\
examples:
  python -m smimesh.testing.meshimage          # what `make image` runs
  skopeo copy oci:<printed layout>:<tag> docker://ghcr.io/you/smimesh:dev
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m smimesh.testing.meshimage",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--file",
        "-f",
        type=Path,
        default=Path("Dockerfile"),
        help="the Dockerfile (default: ./Dockerfile)",
    )
    parser.add_argument(
        "--context",
        type=Path,
        default=Path(),
        help="the build context COPY reads from (default: .)",
    )
    parser.add_argument(
        "--tag",
        default=smimesh.__version__,
        help="the tag in the layout (default: the package version)",
    )
    parser.add_argument(
        "--no-wheels",
        dest="wheels",
        action="store_false",
        help="do not first make the context's build/wheels/ with pip (it is remade only when "
        "pyproject.toml, README.md or smimesh/ changed)",
    )
    parser.add_argument(
        "--wheels-only",
        action="store_true",
        help="only make build/wheels/ (for docker build or buildah bud) and print its path",
    )
    parser.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an ARG default, as docker build does",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    build_args = {}
    for item in args.build_arg:
        key, sep, value = item.partition("=")
        if not sep:
            gotools.say(f"error: --build-arg {item!r} is not NAME=VALUE")
            return 2
        build_args[key] = value
    request = building.Request(args.file, args.context, args.tag, build_args)
    started = time.monotonic()
    try:
        if args.wheels or args.wheels_only:
            wheels = wheelhouse.ensure_wheels(args.context, say=gotools.say)
            if args.wheels_only:
                print(wheels)
                return 0
        packed = building.build(request, cache=gotools.cache_root() / "image", say=gotools.say)
    except failures.BuildError as exc:
        gotools.say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        gotools.say("interrupted; nothing half-built is kept")
        return 130
    gotools.say(
        f"image {names.IMAGE_REPOSITORY}:{packed.tag} in {time.monotonic() - started:.1f}s: "
        f"{packed.compressed_bytes / MIB:.0f} MiB compressed, "
        f"{packed.unpacked_bytes / MIB:.0f} MiB unpacked"
    )
    print(f"oci:{packed.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
