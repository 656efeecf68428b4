"""Compiles the mesh model (cluster state and SMI hub objects) into one proxy config per
proxy. Pure: no I/O, no clock; deterministic output. Start at `compiling.compile_mesh` (the
whole mesh at once, the reference) or `incremental.IncrementalCompiler` (change sets in,
changed `proxyconfig.resources` out).
"""

from smimesh.compiler import (
    compiling,
    dependencies,
    findings,
    incremental,
    matching,
    services,
    splits,
    state,
    targets,
)

__all__ = [
    "compiling",
    "dependencies",
    "findings",
    "incremental",
    "matching",
    "services",
    "splits",
    "state",
    "targets",
]
