"""The opaque TCP filter: relay bytes both ways until either side is done.

Used by `outbound` (a TCP Service port: the TrafficSplit is applied once per connection; also
CONNECT tunnels and transparent passthrough) and by `inbound` (an authorized TCP connection
to the local app). Half-close is propagated where TCP allows it (TLS cannot: there an
ended direction closes the connection); byte counts feed `metrics`.
"""

from __future__ import annotations

import asyncio

from smimesh._aio import streams


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: list[int]
) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            count[0] += len(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:  # TLS cannot half-close: end the whole connection, or both sides wait forever
            writer.close()
    except (ConnectionError, OSError):
        writer.close()


async def relay(
    down_reader: asyncio.StreamReader,
    down_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    *,
    first: bytes = b"",
) -> tuple[int, int]:
    """Relay until both directions ended; returns (bytes sent upstream, bytes received)."""
    sent, received = [len(first)], [0]
    if first:
        up_writer.write(first)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pump(down_reader, up_writer, sent))
            group.create_task(_pump(up_reader, down_writer, received))
    finally:
        await asyncio.gather(streams.close(up_writer), streams.close(down_writer))
    return sent[0], received[0]
