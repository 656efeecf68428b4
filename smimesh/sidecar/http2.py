"""HTTP/2 and gRPC (placeholder until the h2 filter chain lands)."""

from __future__ import annotations

import asyncio

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def sniff(reader: asyncio.StreamReader, *, within: float = 10.0) -> bytes:
    """The first bytes of a connection, enough to tell the HTTP/2 preface from HTTP/1.1."""
    data = b""
    async with asyncio.timeout(within):
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return data
            data += chunk
            if len(data) >= len(PREFACE) or not PREFACE.startswith(data):
                return data


async def serve_outbound(*args: object) -> None:
    raise NotImplementedError


async def serve_inbound(*args: object) -> None:
    raise NotImplementedError
