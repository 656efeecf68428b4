"""HTTP/2 sessions: one h2 state machine over one asyncio stream, either side, with streams
exposed as queues and sending that respects flow control.

Used by `http2` (downstream server sessions and pooled upstream client sessions). Received data
is acknowledged only once the consumer took it (`Stream.consumed`), so a slow peer on one side
slows the other instead of filling memory. A server session bounds what a peer can make it do
(`settings.Limits`): at most `h2_max_streams` handler tasks at once (a stream beyond gets
REFUSED_STREAM and no task), a peer's reset cancels that stream's handler, resets and refusals
draw on a token bucket whose exhaustion ends the connection with GOAWAY ENHANCE_YOUR_CALM (the
rapid-reset defence of CVE-2023-44487), and a session with no open stream for
`h2_idle_timeout` seconds ends with GOAWAY NO_ERROR. Sending on a stream the peer already
reset is a quiet no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from smimesh._aio import streams, tasks
from smimesh.sidecar import settings

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
WINDOW = 1 << 20
MAX_HEADER_LIST = 64 * 1024
READ_SIZE = 16 * 1024  # bytes read per turn of the loop: bounds one peer's share of it
PARSE_SLICE = 4096


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


class ResetBudget:
    """A token bucket of stream resets: `burst` at once, refilled at `rate` per second."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def spend(self) -> bool:
        """Take one token; False once the bucket is empty."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1
        return self.tokens >= 0


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        on_request: Callable[[Stream], Awaitable[None]] | None = None,
        name: str = "h2",
        limits: settings.Limits | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=client, header_encoding=None)
        )
        self.on_request = on_request
        self.limits = limits if limits is not None else settings.Limits()
        self.streams: dict[int, Stream] = {}
        self.handlers = tasks.Nursery(name)
        self.running: dict[int, asyncio.Task[Any]] = {}
        self.resets = ResetBudget(self.limits.h2_reset_burst, self.limits.h2_reset_rate)
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
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.h2_max_streams,
            }
        )
        self.conn.increment_flow_control_window(WINDOW * 16)
        if first:
            try:
                self._receive(first)
            except h2.exceptions.ProtocolError as exc:  # GOAWAY queued; `run` only closes
                log.debug("%s: session ended: %s", self.handlers.name, exc)
                self.closed = True
        self.flush()

    @property
    def capacity(self) -> int:
        """Client side: streams we may still open. Until the server's SETTINGS arrive its
        limit is unknown (unbounded in h2), so never assume more than our own."""
        limit = min(self.conn.remote_settings.max_concurrent_streams, self.limits.h2_max_streams)
        return 0 if self.closed else limit - self.conn.open_outbound_streams

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def run(
        self, idle_wait: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    ) -> None:
        """Read until the peer goes away (or stayed idle too long); then every open stream
        sees a reset."""
        try:
            while not self.closed:
                if self.streams:
                    data = await self.reader.read(READ_SIZE)
                else:
                    try:
                        data = await self._read_idle(idle_wait)
                    except TimeoutError:
                        if self.streams:  # a client stream opened meanwhile: not idle
                            continue
                        log.debug("%s: idle for %gs; GOAWAY", self.handlers.name,
                                  self.limits.h2_idle_timeout)  # fmt: skip
                        self.goaway()
                        await self.writer.drain()
                        break
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

    async def _read_idle(
        self, idle_wait: Callable[[], contextlib.AbstractContextManager[None]] | None
    ) -> bytes:
        """A read while no stream is open: a drain may cut it short, the idle timeout ends it
        with TimeoutError (no byte is lost: a cancelled read leaves the buffer alone)."""
        timeout = self.limits.h2_idle_timeout
        async with asyncio.timeout(timeout if timeout > 0 else None):
            if idle_wait is None:
                return await self.reader.read(READ_SIZE)
            with idle_wait():
                return await self.reader.read(READ_SIZE)

    def _receive(self, data: bytes) -> None:
        """Feed h2 a slice at a time: once a slice ends the session (GOAWAY ENHANCE_YOUR_CALM
        mid-batch), the frames after it are never even parsed."""
        for start in range(0, len(data), PARSE_SLICE):
            try:
                events = self.conn.receive_data(data[start : start + PARSE_SLICE])
            except h2.exceptions.ProtocolError:
                self.flush()
                raise
            for event in events:
                if self.closed:
                    return
                self._dispatch(event)
            if self.closed:
                return

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._accept(event.stream_id or 0, list(event.headers or []))
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
            self._window.set()  # a sender waiting for this stream's window must look again
            found = self.streams.get(event.stream_id or 0)
            if found is not None:
                self._fail(found, "reset", event.error_code)
                if self.on_request is not None:  # the peer gave up on a stream we accepted
                    self._cancel(found.stream_id)
                    self._spend_reset()
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

    def _accept(self, stream_id: int, headers: Headers) -> None:
        """Server side: a handler task for a new stream, unless as many already run as we
        advertised (a peer that ignores our SETTINGS, or resets streams to reopen them
        sooner): then REFUSED_STREAM, which the client may safely retry."""
        if self.on_request is not None and len(self.running) >= self.limits.h2_max_streams:
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            self._spend_reset()
            return
        stream = Stream(self, stream_id, headers)
        self.streams[stream_id] = stream
        self.idle.clear()
        if self.on_request is not None:
            task = self.handlers.start(self._handle(stream))
            self.running[stream_id] = task
            task.add_done_callback(lambda _: self.running.pop(stream_id, None))

    def _cancel(self, stream_id: int) -> None:
        task = self.running.pop(stream_id, None)
        if task is not None:
            task.cancel()
        self.forget(stream_id)  # a task cancelled before it started runs no `finally`

    def _spend_reset(self) -> None:
        if self.resets.spend() or self.closed:
            return
        log.info(
            "%s: peer reset or opened too many streams (more than %d, then %g/s); "
            "GOAWAY ENHANCE_YOUR_CALM",
            self.handlers.name, self.limits.h2_reset_burst, self.limits.h2_reset_rate,
        )  # fmt: skip
        self.goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self.closed = True
        for stream_id in list(self.running):
            self._cancel(stream_id)

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
        """Client side: start a request stream (ConnectionResetError if the session ended)."""
        try:
            stream_id = self.conn.get_next_available_stream_id()
            stream = Stream(self, stream_id, headers)
            self.conn.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            self.closed = True
            raise ConnectionResetError(f"h2 session cannot open a stream: {exc}") from None
        stream.response = asyncio.get_running_loop().create_future()
        self.streams[stream_id] = stream
        self.idle.clear()
        self.flush()
        return stream

    def send_headers(self, stream_id: int, headers: Headers, *, end: bool = False) -> None:
        with self._sending(stream_id):
            self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()

    def send_body(self, stream_id: int, body: bytes) -> None:
        """A short final body, e.g. a local answer; a peer that left no window for it (an
        initial window of 0) gets the stream reset rather than a stream left open."""
        try:
            self.conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.FlowControlError:
            self.reset(stream_id)
        except h2.exceptions.ProtocolError as exc:
            log.debug("%s: stream %d: not sent: %s", self.handlers.name, stream_id, exc)
        self.flush()

    async def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        view = memoryview(data)
        while view:
            try:
                window = min(
                    self.conn.local_flow_control_window(stream_id),
                    self.conn.max_outbound_frame_size,
                )
            except h2.exceptions.ProtocolError as exc:  # reset meanwhile: nobody reads on
                log.debug("%s: stream %d: not sent: %s", self.handlers.name, stream_id, exc)
                return
            if window <= 0:
                if self.closed:
                    raise ConnectionResetError("h2 session closed")
                self._window.clear()
                await self._window.wait()
                continue
            chunk, view = view[:window], view[window:]
            with self._sending(stream_id):
                self.conn.send_data(stream_id, bytes(chunk), end_stream=end and not view)
            self.flush()
            await self.writer.drain()
        if end and not data:
            self.end(stream_id)

    def end(self, stream_id: int) -> None:
        with self._sending(stream_id):
            self.conn.end_stream(stream_id)
        self.flush()

    @contextlib.contextmanager
    def _sending(self, stream_id: int) -> Iterator[None]:
        """Sending on a stream the peer reset (or on a session that ended) does nothing: the
        other side has already given up on it, and that is no error of ours."""
        try:
            yield
        except h2.exceptions.ProtocolError as exc:
            log.debug("%s: stream %d: not sent: %s", self.handlers.name, stream_id, exc)

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, code)
            self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.acknowledge_received_data(size, stream_id)
                self.flush()

    def goaway(self, code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection(error_code=code)
            self.flush()
