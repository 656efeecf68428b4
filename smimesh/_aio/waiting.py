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
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str]
"""What a timeout says; a callable is asked only when the wait failed (to add a log tail)."""


class WaitTimeoutError(TimeoutError):
    """An `eventually` whose condition never held; its text is the caller's message."""


Failure = Callable[[str], Exception]
"""What an `eventually` raises when time is up, made from its message: `WaitTimeoutError`
unless the caller has an error of its own (the local mesh's `MeshError`)."""


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


class _Polling:
    """One `eventually`'s deadline and the last error it ignored (for the failure text)."""

    def __init__(self, timeout: float, message: Message, error: Failure) -> None:
        self.deadline = time.monotonic() + timeout
        self.message = message
        self.error = error
        self.last: BaseException | None = None

    def failure(self) -> Exception:
        text = self.message() if callable(self.message) else self.message
        return self.error(f"{text} (last error: {self.last!r})" if self.last else text)

    def done(self, result: object, error: BaseException | None) -> bool:
        """True if `result` ends the wait; raises the failure once the time is up."""
        if error is None and result:
            return True
        self.last = error  # an answer that is not yet the one awaited clears the last error
        if time.monotonic() >= self.deadline:
            raise self.failure()
        return False

    async def awaited(
        self, result: Awaitable[T], ignoring: tuple[type[Exception], ...]
    ) -> tuple[T | None, BaseException | None]:
        """An async probe's result, cut at the deadline."""
        try:
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                return await result, None
        except ignoring as exc:
            return None, exc
        except TimeoutError as exc:  # the probe itself outlived the deadline
            self.last = self.last or exc
            raise self.failure() from exc


def _attempt(
    probe: Callable[[], T], ignoring: tuple[type[Exception], ...]
) -> tuple[T | None, BaseException | None]:
    try:
        return probe(), None
    except ignoring as exc:
        return None, exc


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,  # noqa: ASYNC109 - the stated bound is the point, and it names the failure
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
    error: Failure = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float,  # noqa: ASYNC109 - the stated bound is the point, and it names the failure
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
    error: Failure = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    timeout: float,  # noqa: ASYNC109 - the stated bound is the point, and it names the failure
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
    error: Failure = WaitTimeoutError,
) -> Any:
    """Call `probe` (sync or async) every `interval` until it returns something true (so a
    probe may answer None for "not yet"), and return that; after `timeout` seconds raise
    `error(message)`. Exceptions in `ignoring` count as "not yet" (a port that does not
    answer yet); others propagate."""
    polling = _Polling(timeout, message, error)
    while True:
        result, failed = _attempt(probe, ignoring)
        if inspect.isawaitable(result):
            result, failed = await polling.awaited(result, ignoring)
        if polling.done(result, failed):
            return result
        await asyncio.sleep(interval)


def eventually_sync(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    message: Message,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
    error: Failure = WaitTimeoutError,
) -> T:
    """`eventually` for threads and blocking code (subprocesses, the local control plane)."""
    polling = _Polling(timeout, message, error)
    while True:
        result, failed = _attempt(probe, ignoring)
        if polling.done(result, failed):
            assert result is not None
            return result
        time.sleep(interval)
