"""Fuzzing of the HTTP/2 codec (`make fuzz`; not collected by `make test`).

A real `smimesh sidecar run` process (the fixture of `test_h2_attacks`: an h2 app behind
it) gets, on its h2c outbound port over loopback, the client preface and then random and
mutated frame sequences: HEADERS (valid HPACK blocks or random bytes, any flags, any stream
id), CONTINUATION, DATA, RST_STREAM, SETTINGS with out-of-range values, PING, PRIORITY,
WINDOW_UPDATE (zero, huge), GOAWAY, PUSH_PROMISE (illegal from a client), unknown frame types,
and bit flips, truncations and insertions on the bytes. After each sequence the client
half-closes; the sidecar must answer with well-formed frames only, end the connection within
a bound (no hang), stay alive, and log no traceback: every failure is a GOAWAY, an RST_STREAM
or a close, never an unhandled exception.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import hpack
import hyperframe.frame as hf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzzing
from tests.sidecar.test_h2_attacks import Sidecar
from tests.sidecar.test_h2_attacks import sidecar_process as sidecar_process

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BOUND = 5.0  # seconds from our half-close to the sidecar's close: past it, the codec hangs
STREAM_IDS = st.sampled_from([0, 1, 1, 3, 3, 5, 7, 2, 4, 101, 2**31 - 1])
FLAGS = st.sets(st.sampled_from(["END_STREAM", "END_HEADERS", "PADDED", "PRIORITY", "ACK"]))

good_headers = st.lists(
    st.sampled_from(
        [
            (":method", "GET"), (":method", "POST"), (":method", "CONNECT"), (":scheme", "http"),
            (":authority", "app"), (":authority", "nowhere"), (":path", "/"),
            (":path", "/?sleep=0.01"), (":path", ""), (":status", "200"), ("te", "trailers"),
            ("te", "gzip"), ("connection", "close"), ("content-length", "3"),
            ("content-length", "-1"), ("x-a", "b"), ("X-Upper", "v"), ("x-nul", "a\x00b"),
            ("", "empty-name"), ("x-long", "v" * 5000),
        ]
    ),
    max_size=10,
)  # fmt: skip


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        base = [(":method", "GET"), (":scheme", "http"), (":authority", "app"), (":path", "/")]
        return bytes(hpack.Encoder().encode(base + draw(good_headers)))
    return draw(st.binary(max_size=64))


def _padded(frame: Any, flags: set[str], draw: st.DrawFn) -> None:
    if "PADDED" in flags:
        frame.pad_length = draw(st.integers(0, 20))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["headers", "continuation", "data", "rst", "settings", "ping",
                                 "priority", "window", "goaway", "push", "unknown"]))  # fmt: skip
    stream_id = draw(STREAM_IDS)
    flags = draw(FLAGS)
    frame: Any
    if kind == "headers":
        frame = hf.HeadersFrame(1, data=draw(header_blocks()))
        frame.flags = flags & {"END_STREAM", "END_HEADERS", "PADDED", "PRIORITY"}
        _padded(frame, flags, draw)
        if "PRIORITY" in flags:
            frame.depends_on, frame.stream_weight = draw(STREAM_IDS), draw(st.integers(0, 255))
    elif kind == "continuation":
        frame = hf.ContinuationFrame(1, data=draw(header_blocks()))
        frame.flags = flags & {"END_HEADERS"}
    elif kind == "data":
        frame = hf.DataFrame(1, data=draw(st.binary(max_size=300)))
        frame.flags = flags & {"END_STREAM", "PADDED"}
        _padded(frame, flags, draw)
    elif kind == "rst":
        frame = hf.RstStreamFrame(1, error_code=draw(st.integers(0, 20)))
    elif kind == "settings":
        codes = st.integers(0, 10)
        values = st.sampled_from([0, 1, 100, 16383, 16384, 2**24, 2**31, 2**32 - 1])
        frame = hf.SettingsFrame(0)
        frame.settings = draw(st.dictionaries(codes, values, max_size=4))
        if "ACK" in flags:
            frame.flags = {"ACK"}
            frame.settings = {}
    elif kind == "ping":
        frame = hf.PingFrame(0, opaque_data=b"\x00" * 8)
        frame.flags = flags & {"ACK"}
    elif kind == "priority":
        frame = hf.PriorityFrame(1, depends_on=draw(STREAM_IDS),
                                 stream_weight=draw(st.integers(0, 255)))  # fmt: skip
    elif kind == "window":
        increment = draw(st.sampled_from([0, 1, 65535, 2**30, 2**31 - 1]))
        frame = hf.WindowUpdateFrame(1, window_increment=increment)
    elif kind == "goaway":
        frame = hf.GoAwayFrame(0, last_stream_id=draw(STREAM_IDS),
                               error_code=draw(st.integers(0, 20)))  # fmt: skip
    elif kind == "push":
        frame = hf.PushPromiseFrame(1, promised_stream_id=2, data=draw(header_blocks()))
        frame.flags = flags & {"END_HEADERS"}
    else:
        body = draw(st.binary(max_size=40))
        kind_byte = draw(st.integers(10, 255))
        header = len(body).to_bytes(3, "big") + bytes([kind_byte, 0])
        return header + stream_id.to_bytes(4, "big") + body
    if kind in ("settings", "ping", "goaway"):
        stream_id = 0 if draw(st.booleans()) else stream_id
    frame.stream_id = stream_id  # after construction: hyperframe refuses wrong ids, we want them
    return bytes(frame.serialize())


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(frames(), min_size=1, max_size=12))))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _frames_of(data: bytes) -> list[Any]:
    """Parse what the sidecar sent: every frame must be well formed."""
    found, view = [], memoryview(data)
    while len(view) >= 9:
        frame, length = hf.Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            break  # the tail of a frame cut by the close
        frame.parse_body(view[9 : 9 + length])
        found.append(frame)
        view = view[9 + length :]
    return found


def _exchange(port: int, payload: bytes) -> list[Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        try:
            sock.sendall(PREFACE + hf.SettingsFrame(0).serialize() + payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed by the sidecar: what it sent before still counts
        received = b""
        started = time.monotonic()
        try:
            while chunk := sock.recv(65536):
                received += chunk
                assert time.monotonic() - started < BOUND, "the sidecar kept the connection"
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"no close within {BOUND}s after {payload!r}")
    return _frames_of(received)


def _check(sidecar: Sidecar, payload: bytes) -> None:
    for frame in _exchange(sidecar.outbound, payload):
        if isinstance(frame, hf.GoAwayFrame | hf.RstStreamFrame):
            assert 0 <= frame.error_code <= 0xD, frame
    assert sidecar.process.poll() is None, sidecar.stderr.read_text()[-4000:]
    log = sidecar.stderr.read_text()
    assert "Traceback" not in log, log[-4000:]
    assert "task failed" not in log, log[-4000:]


def test_fuzz_h2_codec(request: pytest.FixtureRequest) -> None:
    sidecar: Sidecar = request.getfixturevalue("sidecar_process")

    @fuzzing.examples(200, deadline=None)
    @given(payload=mutated())
    def fuzz_frames(payload: bytes) -> None:
        _check(sidecar, payload)

    assert fuzzing.rounds_within_budget(fuzz_frames) > 0
    # Still serving afterwards.
    _check(sidecar, b"")
