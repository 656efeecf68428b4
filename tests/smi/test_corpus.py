"""Real-world manifests (SMI spec, Flagger, Argo Rollouts, OSM, Traefik Mesh, conformance
suite) get the verdict tests/data/smi/index.yaml expects, naming the expected fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.cli import validating

pytestmark = pytest.mark.fast

CORPUS = Path(__file__).parent.parent / "data" / "smi"
INDEX: list[dict[str, Any]] = yaml.safe_load((CORPUS / "index.yaml").read_text())


def test_every_corpus_file_is_listed_in_the_index() -> None:
    listed = {entry["file"] for entry in INDEX}
    found = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.yaml") if p.name != "index.yaml"}
    assert found == listed


@pytest.mark.parametrize("entry", INDEX, ids=[entry["file"] for entry in INDEX])
def test_corpus_file_gets_its_expected_verdicts(entry: dict[str, Any]) -> None:
    entries = validating.run([str(CORPUS / entry["file"])])
    assert [e.verdict for e in entries] == entry["verdicts"]
    errors = {p.path for e in entries for p in e.problems if p.severity == "error"}
    for path in entry.get("paths", []):
        assert path in errors, f"{path} not among {errors}"
    warnings = {p.path for e in entries for p in e.problems if p.severity == "warning"}
    for path in entry.get("warnings", []):
        assert path in warnings
    for e in entries:
        for problem in e.problems:
            assert "Traceback" not in problem.reason
            assert problem.reason
