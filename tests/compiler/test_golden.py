"""Golden scenarios: tests/golden/compiler/<scenario>/input.yaml compiles to expected.json.

Run `pytest tests/compiler --update-golden` to rewrite the expected files, then review the
diff: the expected output is the reviewed record of what the compiler does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.compiler import compiling, parsing

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "compiler"
SCENARIOS = sorted(path.name for path in GOLDEN.iterdir() if (path / "input.yaml").is_file())


def compile_scenario(name: str) -> dict[str, Any]:
    objects = list(yaml.safe_load_all((GOLDEN / name / "input.yaml").read_text()))
    result = compiling.compile_mesh(parsing.mesh_state(objects))
    return {
        "configs": {
            str(ref): json.loads(config.to_json()) for ref, config in result.configs.items()
        },
        "findings": [finding.model_dump() for finding in result.findings],
    }


@pytest.mark.fast
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_compiles_to_its_golden_output(name: str, update_golden: bool) -> None:
    actual = json.dumps(compile_scenario(name), indent=2, sort_keys=True) + "\n"
    expected_path = GOLDEN / name / "expected.json"
    if update_golden:
        expected_path.write_text(actual)
    assert expected_path.is_file(), f"no golden output yet: run with --update-golden ({name})"
    assert actual == expected_path.read_text()


def canonical_bytes(name: str) -> bytes:
    """Each proxy's config as the config server sends it (`to_json`), in compiled order."""
    objects = list(yaml.safe_load_all((GOLDEN / name / "input.yaml").read_text()))
    result = compiling.compile_mesh(parsing.mesh_state(objects))
    return b"\n".join(str(ref).encode() + b" " + c.to_json() for ref, c in result.configs.items())


def _in_a_fresh_process(name: str, hash_seed: str) -> bytes:
    """The canonical bytes from another interpreter: set and dict order that depends on string
    hashing differs there, so only output that does not depend on it compares equal."""
    code = (
        "import sys; from tests.compiler import test_golden as g; "
        f"sys.stdout.buffer.write(g.canonical_bytes({name!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    return done.stdout


# Not in the fast tier: it compiles again in fresh interpreters (other hash seeds).
@pytest.mark.parametrize("name", SCENARIOS)
def test_compiling_twice_gives_byte_equal_output(name: str) -> None:
    here = canonical_bytes(name)
    assert here == canonical_bytes(name)
    assert _in_a_fresh_process(name, "1") == here
    assert _in_a_fresh_process(name, "2") == here
