"""`gotools`: a silent build still reports progress, a failed one says why, a cached tool is
reused without Go."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimesh.testing import gotools

TOOL = gotools.GoTool("example", "example.com/cmd/example", "v1.0.0")


def test_a_silent_build_says_it_still_runs_and_a_failure_shows_the_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gotools, "PROGRESS_SECONDS", 0.2)
    said: list[str] = []
    with pytest.raises(gotools.GoToolError, match=r"exit 3\) building demo:\nthe last words"):
        gotools.run_go(
            ["bash", "-c", "sleep 1; echo the last words; exit 3"],
            cwd=None,
            what="demo",
            say=said.append,
        )
    assert sum("still building demo" in message for message in said) >= 2, said


def test_a_cached_tool_is_reused_without_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path))
    path = gotools.tool_path(TOOL)
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gotools.ensure_tool(TOOL, say=lambda message: pytest.fail(message)) == path


@pytest.mark.fast
def test_a_machine_without_go_is_told_what_go_was_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMIMESH_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(gotools.GoToolError, match=r"Go is not on PATH; .* build example v1\.0\.0"):
        gotools.ensure_tool(TOOL, say=lambda message: None)
    assert not gotools.tool_path(TOOL).exists()
