"""Closing asyncio stream writers for sure: `close` waits a little for an orderly close (TLS
sends close_notify and waits for the peer's) and then aborts, so a silent peer never keeps a
transport open. A leaf helper: imports nothing else of smimesh.
"""

from __future__ import annotations

import asyncio
import contextlib


async def close(writer: asyncio.StreamWriter, *, grace: float = 1.0) -> None:
    if not writer.is_closing():
        writer.close()
    try:
        async with asyncio.timeout(grace):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


def abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(RuntimeError):
        writer.transport.abort()
