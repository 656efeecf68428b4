"""Reading `-f FILE|DIR|-` for validate and inject: directories walked in sorted order for
YAML and JSON only, a file named directly whatever its suffix, stdin once, kubectl's
`-f=FILE`, and an unreadable file reported (not raised) in its place."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from smimesh.cli import inputs

pytestmark = pytest.mark.fast


def test_a_directory_is_walked_in_sorted_order_for_manifests_only(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.yml").write_text("z")
    (tmp_path / "a.json").write_text("a")
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "c.yaml").write_text("c")
    read = inputs.read([str(tmp_path)])
    assert [(Path(i.label).relative_to(tmp_path).as_posix(), i.text) for i in read] == [
        ("a.json", "a"),
        ("b/z.yml", "z"),
        ("c.yaml", "c"),
    ]


def test_a_named_file_stdin_and_the_kubectl_equals_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = tmp_path / "split.txt"
    named.write_text("named")
    monkeypatch.setattr("sys.stdin", io.StringIO("piped"))
    read = inputs.read([f"={named}", "-"])
    assert [(i.label, i.text, i.error) for i in read] == [
        (str(named), "named", None),
        ("<stdin>", "piped", None),
    ]


def test_an_unreadable_file_is_reported_in_its_place(tmp_path: Path) -> None:
    missing, binary = tmp_path / "gone.yaml", tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    read = inputs.read([str(missing), str(binary)])
    assert [(i.label, i.text) for i in read] == [(str(missing), None), (str(binary), None)]
    assert read[0].error == "no such file or directory"
    assert str(read[1].error).startswith("cannot read:")
