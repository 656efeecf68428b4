"""The YAML blocks of the guides in docs/: what the docs tests check and what the canary
tests run (tests/canary/ apply the guides' own MetricTemplates and analysis templates)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(name: str) -> list[list[dict[str, Any]]]:
    text = (DOCS / name).read_text()
    found = [list(yaml.safe_load_all(block)) for block in BLOCK.findall(text)]
    assert found, f"{name} has no YAML blocks"
    return found


def objects(name: str) -> list[dict[str, Any]]:
    return [d for block in blocks(name) for d in block if isinstance(d, dict) and "kind" in d]
