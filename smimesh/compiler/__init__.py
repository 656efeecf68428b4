"""Compiles the mesh model (cluster state and SMI hub objects) into one proxy config per
proxy. Pure: no I/O, no clock; deterministic output. Start at `compiling.compile_mesh`.
"""

from smimesh.compiler import compiling, findings, matching, services, splits, state, targets

__all__ = ["compiling", "findings", "matching", "services", "splits", "state", "targets"]
