"""Which Debian bases `meshimage` can make and from which mirror: the apt sources of this
machine, one-line and deb822, for the suite and its -updates/-security."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimesh.testing.meshimage import bases, failures

DEB822 = """Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security trixie-security
Components: main
"""


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, ...]:
    listing = tmp_path / "sources.list.d"
    listing.mkdir()
    (listing / "debian.sources").write_text(DEB822)
    (listing / "other.list").write_text(
        "deb [arch=amd64] https://vendor.example/apt stable main\n"
        "deb http://mirror.example/debian bookworm main\n"
    )
    return (tmp_path / "sources.list", listing)


@pytest.mark.fast
def test_the_suites_sources_come_from_apts_configuration(sources: tuple[Path, ...]) -> None:
    assert bases.configured_mirrors("bookworm", sources=sources) == (
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    )


@pytest.mark.fast
def test_a_dated_slim_reference_is_its_suite_and_the_digest_follows_the_inputs(
    sources: tuple[Path, ...],
) -> None:
    dated = bases.spec_for("debian:bookworm-20250520-slim", sources=sources)
    plain = bases.spec_for("docker.io/library/debian:bookworm-slim", sources=sources)
    assert dated == plain
    assert dated.suite == "bookworm"
    assert dated.variant == "minbase"
    other = bases.BaseSpec(suite="bookworm", mirrors=dated.mirrors[:1])
    assert other.digest() != dated.digest()


@pytest.mark.fast
@pytest.mark.parametrize("reference", ["python:3.11-slim", "debian:bookworm", "ubuntu:24.04-slim"])
def test_a_base_mmdebstrap_cannot_make_is_refused(
    reference: str, sources: tuple[Path, ...]
) -> None:
    with pytest.raises(failures.BuildError, match="only Debian bases"):
        bases.spec_for(reference, sources=sources)


@pytest.mark.fast
def test_a_suite_apt_has_no_source_for_is_refused(sources: tuple[Path, ...]) -> None:
    with pytest.raises(failures.BuildError, match="apt has no Debian source for trixie"):
        bases.spec_for("debian:trixie-slim", sources=sources)
