"""Golden scenarios: tests/golden/compiler/<scenario>/input.yaml compiles to expected.json.

Run `pytest tests/compiler --update-golden` to rewrite the expected files, then review the
diff: the expected output is the reviewed record of what the compiler does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from smimesh.compiler import compiling, parsing

pytestmark = pytest.mark.fast

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


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_compiles_to_its_golden_output(name: str, update_golden: bool) -> None:
    actual = json.dumps(compile_scenario(name), indent=2, sort_keys=True) + "\n"
    expected_path = GOLDEN / name / "expected.json"
    if update_golden:
        expected_path.write_text(actual)
    assert expected_path.is_file(), f"no golden output yet: run with --update-golden ({name})"
    assert actual == expected_path.read_text()


def test_compiling_twice_gives_byte_equal_output() -> None:
    for name in SCENARIOS:
        assert compile_scenario(name) == compile_scenario(name)
