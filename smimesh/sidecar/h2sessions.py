"""HTTP/2 sessions: one h2 state machine over one asyncio stream, either side, with streams
exposed as queues and sending that respects flow control.

Used by `http2` (downstream server sessions and pooled upstream client sessions). Received data
is acknowledged only once the consumer took it (`Stream.consumed`), so a slow peer on one side
slows the other instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from smimesh._aio import streams, tasks

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
WINDOW = 1 << 20
MAX_HEADER_LIST = 64 * 1024
MAX_STREAMS = 1000


@dataclass(eq=False)
class Stream:
    """One HTTP/2 stream as seen by its consumer: headers, then queued events."""

    session: Session
    stream_id: int
    headers: Headers = field(default_factory=list)
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    response: asyncio.Future[Headers] | None = None

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def consumed(self, size: int) -> None:
        self.session.acknowledge(self.stream_id, size)


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        on_request: Callable[[Stream], Awaitable[None]] | None = None,
        name: str = "h2",
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=client, header_encoding=None)
        )
        self.on_request = on_request
        self.streams: dict[int, Stream] = {}
        self.handlers = tasks.Nursery(name)
        self.closed = False
        self._window = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def start(self, first: bytes = b"") -> None:
        self.conn.initiate_connection()
        self.conn.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                # Bounds a peer's cost: HPACK refuses bigger header lists, and streams beyond
                # the limit are refused before a handler task exists.
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            }
        )
        self.conn.increment_flow_control_window(WINDOW * 16)
        if first:
            self._receive(first)
        self.flush()

    @property
    def capacity(self) -> int:
        limit = self.conn.remote_settings.max_concurrent_streams
        return 0 if self.closed else limit - self.conn.open_outbound_streams

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def run(
        self, idle_wait: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    ) -> None:
        """Read until the peer goes away; then every open stream sees a reset."""
        try:
            while not self.closed:
                if idle_wait is not None and not self.streams:
                    with idle_wait():
                        data = await self.reader.read(65536)
                else:
                    data = await self.reader.read(65536)
                if not data:
                    break
                self._receive(data)
                self.flush()
                await self.writer.drain()
        except (ConnectionError, OSError, h2.exceptions.ProtocolError) as exc:
            # A ProtocolError after our GOAWAY (a late PING) just ends the session too.
            log.debug("%s: session ended: %s", self.handlers.name, exc)
        finally:
            self.closed = True
            for stream in list(self.streams.values()):
                self._fail(stream, "reset", h2.errors.ErrorCodes.CANCEL)
            try:
                await streams.close(self.writer)
            finally:
                await self.handlers.cancel()

    def _receive(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            raise
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            stream = Stream(self, event.stream_id, list(event.headers or []))
            self.streams[event.stream_id] = stream
            self.idle.clear()
            if self.on_request is not None:
                self.handlers.start(self._handle(stream))
        elif isinstance(event, h2.events.ResponseReceived):
            found = self.streams.get(event.stream_id or 0)
            if found is not None and found.response is not None and not found.response.done():
                found.response.set_result(list(event.headers or []))
        elif isinstance(event, h2.events.DataReceived):
            self._put(event.stream_id, "data", (event.data, event.flow_controlled_length))
        elif isinstance(event, h2.events.TrailersReceived):
            self._put(event.stream_id, "trailers", list(event.headers or []))
        elif isinstance(event, h2.events.StreamEnded):
            self._put(event.stream_id, "end", None)
        elif isinstance(event, h2.events.StreamReset):
            found = self.streams.get(event.stream_id or 0)
            if found is not None:
                self._fail(found, "reset", event.error_code)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def _put(self, stream_id: int | None, kind: str, payload: Any) -> None:
        stream = self.streams.get(stream_id) if stream_id is not None else None
        if stream is not None:
            stream.events.put_nowait((kind, payload))

    def _fail(self, stream: Stream, kind: str, code: Any) -> None:
        if stream.response is not None and not stream.response.done():
            stream.response.set_exception(ConnectionResetError(f"stream reset ({code})"))
        stream.events.put_nowait((kind, code))

    async def _handle(self, stream: Stream) -> None:
        assert self.on_request is not None
        try:
            await self.on_request(stream)
        finally:
            self.forget(stream.stream_id)

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if not self.streams:
            self.idle.set()

    # -- sending ------------------------------------------------------------------------------

    def open(self, headers: Headers, *, end: bool = False) -> Stream:
        """Client side: start a request stream."""
        stream_id = self.conn.get_next_available_stream_id()
        stream = Stream(self, stream_id, headers)
        stream.response = asyncio.get_running_loop().create_future()
        self.streams[stream_id] = stream
        self.idle.clear()
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()
        return stream

    def send_headers(self, stream_id: int, headers: Headers, *, end: bool = False) -> None:
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()

    async def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        view = memoryview(data)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                if self.closed:
                    raise ConnectionResetError("h2 session closed")
                self._window.clear()
                await self._window.wait()
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(stream_id, bytes(chunk), end_stream=end and not view)
            self.flush()
            await self.writer.drain()
        if end and not data:
            self.end(stream_id)

    def end(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)
        self.flush()

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, code)
            self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.acknowledge_received_data(size, stream_id)
                self.flush()

    def goaway(self) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection()
            self.flush()
