"""The SMI API: pydantic models for every released version, hub models, conversion,
semantic validation and CRD generation. Pure: imports nothing else of smimesh.

Modules: `split`, `access`, `specs`, `metrics` (models per group), `objects` (shared base),
`quantities`, `kinds` (catalog), `conversion` (+ `conversion_rules`), `documents` (YAML ->
objects), `regexes`, `validating`, `problems`, `crdgen`.
"""

from smimesh.smi import (
    access,
    conversion,
    crdgen,
    documents,
    kinds,
    metrics,
    problems,
    quantities,
    regexes,
    specs,
    split,
    validating,
)

__all__ = [
    "access",
    "conversion",
    "crdgen",
    "documents",
    "kinds",
    "metrics",
    "problems",
    "quantities",
    "regexes",
    "specs",
    "split",
    "validating",
]
