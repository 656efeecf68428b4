"""Leaf asyncio helpers (task groups, backoff) shared by the operator and the sidecar.

Imports nothing else of smimesh.
"""

from smimesh._aio import backoff, streams, tasks

__all__ = ["backoff", "streams", "tasks"]
