"""Leaf asyncio helpers (task groups, backoff, waiting) shared by the operator and the sidecar.

Imports nothing else of smimesh.
"""

from smimesh._aio import backoff, streams, tasks, waiting

__all__ = ["backoff", "streams", "tasks", "waiting"]
