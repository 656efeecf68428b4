"""`python -m smimesh.testing.meshimage` (`make image`): help that says what it follows and
needs, and errors as one line each, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimesh.testing.meshimage import __main__ as cli


@pytest.mark.fast
def test_help_names_the_instructions_the_cache_and_what_it_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in ("COPY [--from]", "mmdebstrap", "umoci", "~/.cache/smimesh/image/",
                 "--build-arg", "--no-wheels", "skopeo copy"):  # fmt: skip
        assert word in text


@pytest.mark.fast
def test_a_missing_dockerfile_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--no-wheels", "--file", str(tmp_path / "Dockerfile"),
                     "--context", str(tmp_path)])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert f"[smimesh] error: cannot read {tmp_path / 'Dockerfile'}" in err
    assert "Traceback" not in err


@pytest.mark.fast
def test_an_unimplemented_instruction_and_a_bad_build_arg_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm-slim\nVOLUME /data\n")
    assert cli.main(["--no-wheels", "--file", str(dockerfile), "--context", str(tmp_path)]) == 1
    assert "line 2: VOLUME is not implemented" in capsys.readouterr().err
    assert cli.main(["--no-wheels", "--build-arg", "NOVALUE"]) == 2
    assert "is not NAME=VALUE" in capsys.readouterr().err
