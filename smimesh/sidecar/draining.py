"""Graceful drain: once started, listeners stop accepting, idle keep-alive connections are
closed at once and busy ones after their current request.

One `Drain` per sidecar, created by `running`; consulted by `http1`, `http2` and `tcp` loops,
reported by `admin` (`/ready` turns 503 while draining).
"""

from __future__ import annotations

import asyncio


class Drain:
    def __init__(self) -> None:
        self.active = False
        self._idle: set[asyncio.Task[object]] = set()

    def __call__(self) -> bool:
        return self.active

    def start(self) -> None:
        self.active = True
        for task in list(self._idle):
            task.cancel()

    def idle(self) -> _Idle:
        """`with drain.idle():` around a wait that may be cut short by a drain."""
        return _Idle(self)


class _Idle:
    def __init__(self, drain: Drain) -> None:
        self.drain = drain
        self.task: asyncio.Task[object] | None = None

    def __enter__(self) -> None:
        self.task = asyncio.current_task()
        if self.task is not None:
            self.drain._idle.add(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.drain._idle.discard(self.task)
