"""Waiting for something to happen, written once: a `Versioned` value tasks can wait on,
`first` of several waits, and `eventually` / `eventually_sync` for polling a condition that
offers nothing to wait on, with a stated timeout and a message on failure.

Used by the operator's loops (leadership, the CA holder, status writing), by the local mesh in
`smimesh.testing` and by the tests. A leaf helper: imports nothing else of smimesh.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str]
"""What a timeout says; a callable is asked only when the wait failed (to add a log tail)."""


class WaitTimeoutError(TimeoutError):
    """An `eventually` whose condition never held; its text is the caller's message."""


class Versioned(Generic[T]):
    """A value and a version that counts its changes; readers remember the version they saw
    and wait for a newer one, so a change is never lost between two looks and no reader
    clears a flag another one was waiting on. Set only from the event loop."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def value(self) -> T:
        return self._value

    @property
    def version(self) -> int:
        return self._version

    def set(self, value: T) -> int:
        """Hold `value` and wake every waiter; returns the new version."""
        self._value = value
        self._version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self._version

    async def wait_for_version(self, version: int) -> T:
        """Until the version is at least `version` (bound it with `asyncio.timeout`)."""
        while self._version < version:
            await self._changed.wait()
        return self._value

    async def wait_newer(self, than: int) -> T:
        """Until the value changed after version `than` was read."""
        return await self.wait_for_version(than + 1)

    async def wait(self, predicate: Callable[[T], bool]) -> T:
        """Until `predicate(value)` holds (at once if it holds now)."""
        while not predicate(self._value):
            await self._changed.wait()
        return self._value


async def first(
    *waits: Awaitable[object],
    timeout: float | None,  # noqa: ASYNC109 - a poll period, not a cancellation
) -> bool:
    """Until the first of `waits` finishes, or `timeout` seconds; the others are cancelled
    and awaited. True if one finished in time."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return bool(done)


def _text(message: Message, last: BaseException | None) -> str:
    text = message() if callable(message) else message
    return f"{text} (last error: {last!r})" if last is not None else text


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float,  # noqa: ASYNC109 - the stated bound is the point, and it names the failure
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    *,
    timeout: float,  # noqa: ASYNC109 - the stated bound is the point, and it names the failure
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T: ...


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,  # noqa: ASYNC109 - the stated bound is the point, and it names the failure
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call `probe` (sync or async) every `interval` until it returns something true, and
    return that; after `timeout` seconds raise `WaitTimeoutError(message)`. Exceptions in `ignoring`
    count as "not yet" (a port that does not answer yet); others propagate at once."""
    last: BaseException | None = None
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if inspect.isawaitable(result):
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        result = await result
                except TimeoutError as exc:  # the probe itself outlived the deadline
                    raise WaitTimeoutError(_text(message, last or exc)) from exc
            if result:
                return result
            last = None  # it answered, just not yet what we wait for
        except ignoring as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(_text(message, last))
        await asyncio.sleep(interval)


def eventually_sync(
    probe: Callable[[], T],
    *,
    timeout: float,
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """`eventually` for threads and blocking code (subprocesses, the local control plane)."""
    last: BaseException | None = None
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if result:
                return result
            last = None  # it answered, just not yet what we wait for
        except ignoring as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(_text(message, last))
        time.sleep(interval)
