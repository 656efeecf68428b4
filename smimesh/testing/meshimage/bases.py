"""The base of a stage: a Debian `FROM debian:<suite>[-<date>]-slim` made with mmdebstrap
(`--variant=minbase`, docs and man pages left out as in Docker's slim images) from the apt
mirror this machine is configured with, and cached as a tarball keyed by its inputs.

Called by `building` for each FROM that names no earlier stage; hands it a tarball to unpack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smimesh.testing import reaping
from smimesh.testing.meshimage import failures

SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
_DEBIAN_BASE = re.compile(
    r"^(?:docker\.io/)?(?:library/)?debian:(?P<suite>[a-z]+)(?:-\d{8})?-slim$"
)
# What Docker's slim Debian images leave out; written into the base's dpkg config, so later
# apt-get installs in RUN leave it out too.
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)

# As Docker's Debian images: apt keeps no downloaded .debs and no package caches in the image.
_APT_CLEAN = (
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
    'Dir::Cache::pkgcache "";',
    'Dir::Cache::srcpkgcache "";',
    'Acquire::Languages "none";',
)

# mmdebstrap copies the host's resolver into the chroot for apt; the image keeps none (the
# runtime gives one; a RUN of apt-get gets the host's bound read-only, never copied).
_NO_HOST_FILES = ('rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',)


@dataclass(frozen=True)
class BaseSpec:
    """Everything the base's content depends on; its digest names the cached tarball."""

    suite: str
    mirrors: tuple[str, ...]
    """One-line apt sources (`deb URI SUITE COMPONENTS`)."""
    variant: str = "minbase"
    dpkg_options: tuple[str, ...] = _DPKG_EXCLUDES
    apt_options: tuple[str, ...] = _APT_CLEAN
    hooks: tuple[str, ...] = _NO_HOST_FILES

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()


def spec_for(reference: str, *, sources: tuple[Path, ...] = SOURCES) -> BaseSpec:
    """The mmdebstrap inputs for a FROM reference, or a `BuildError` saying what is
    supported."""
    match = _DEBIAN_BASE.match(reference)
    if match is None:
        raise failures.BuildError(
            f"FROM {reference}: only Debian bases (debian:<suite>-slim or "
            f"debian:<suite>-<date>-slim) can be made here, with mmdebstrap"
        )
    suite = match.group("suite")
    mirrors = configured_mirrors(suite, sources=sources)
    if not any(line.split()[2] == suite for line in mirrors):  # -security alone is no base
        raise failures.BuildError(
            f"FROM {reference}: apt has no Debian source for {suite} "
            f"(looked in {', '.join(map(str, sources))})"
        )
    return BaseSpec(suite=suite, mirrors=mirrors)


def configured_mirrors(suite: str, *, sources: tuple[Path, ...] = SOURCES) -> tuple[str, ...]:
    """The `deb` sources of this machine's apt for the suite and its -updates/-security."""
    lines: list[str] = []
    for source in sources:
        files = sorted(source.iterdir()) if source.is_dir() else [source]
        for path in files:
            if not path.is_file():
                continue
            text = path.read_text()
            if path.suffix == ".sources":
                lines.extend(_deb822_lines(text))
            elif path.suffix == ".list":
                lines.extend(
                    line.strip() for line in text.splitlines() if line.strip().startswith("deb ")
                )
    wanted = []
    for line in lines:
        words = [word for word in line.split() if not word.startswith("[")]
        ours = len(words) >= 4 and (words[2] == suite or words[2].startswith(f"{suite}-"))
        if ours and "/debian" in words[1] and " ".join(words) not in wanted:
            wanted.append(" ".join(words))
    return tuple(wanted)


def _deb822_lines(text: str) -> list[str]:
    lines = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw:
                continue
            key, _, value = raw.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                lines.append(f"deb {uri} {suite} {fields.get('components', 'main')}")
    return lines


def ensure_base(spec: BaseSpec, *, cache: Path, say: Callable[[str], None]) -> Path:
    """The base's tarball, made once with mmdebstrap (tens of seconds to minutes)."""
    tarball = cache / "bases" / f"{spec.suite}-{spec.digest()[:16]}.tar"
    if tarball.is_file():
        return tarball
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise failures.BuildError("mmdebstrap is not installed: run `make image-deps`")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    command = [
        mmdebstrap,
        f"--variant={spec.variant}",
        "--mode=root",
        "--quiet",
        *(f"--dpkgopt={option}" for option in spec.dpkg_options),
        *(f"--aptopt={option}" for option in spec.apt_options),
        *(f"--customize-hook={hook}" for hook in spec.hooks),
        spec.suite,
        str(partial),
        *spec.mirrors,
    ]
    say(f"making the {spec.suite} base with mmdebstrap (once per input; about a minute)")
    started = time.monotonic()
    # Its own process group, killed whole on any way out (mmdebstrap's helpers outlive a
    # SIGTERM to it), and held by the reaper in case this process dies first.
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        reaping.hold_group(proc.pid, grace=1.0)
        try:
            code = proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            reaping.release_group(proc.pid)
            if proc.returncode != 0:
                partial.unlink(missing_ok=True)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if code != 0:
        tail = "\n".join(text.splitlines()[-20:])
        raise failures.BuildError(f"mmdebstrap failed (exit {code}):\n{tail}")
    partial.replace(tarball)
    say(f"made the base in {time.monotonic() - started:.0f}s: {tarball}")
    return tarball
