"""Leaf asyncio helpers (task groups, backoff) shared by the operator and the sidecar.

Imports nothing else of smimesh.
"""
