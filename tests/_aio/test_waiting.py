"""`_aio.waiting`: a Versioned value wakes every reader of a newer version, `first` cancels
the waits that lost, and `eventually` returns the first true probe or fails with its message."""

from __future__ import annotations

import asyncio
import time

import pytest

from smimesh._aio import waiting


async def test_a_reader_of_an_old_version_is_woken_by_every_newer_one() -> None:
    value = waiting.Versioned("a")
    seen = value.version
    readers = [asyncio.create_task(value.wait_newer(seen)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(reader.done() for reader in readers)
    value.set("b")
    assert await asyncio.gather(*readers) == ["b", "b", "b"]
    # a change made before the reader looks is not lost
    value.set("c")
    assert await value.wait_newer(seen) == "c"
    assert await value.wait_for_version(2) == "c"


async def test_wait_returns_once_the_predicate_holds() -> None:
    value = waiting.Versioned(0)
    reader = asyncio.create_task(value.wait(lambda n: n >= 2))
    value.set(1)
    await asyncio.sleep(0)
    assert not reader.done()
    value.set(2)
    assert await reader == 2


async def test_first_returns_when_one_wait_ends_and_cancels_the_others() -> None:
    fast, slow = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_soon(fast.set)
    assert await waiting.first(fast.wait(), slow.wait(), timeout=5)
    assert not await waiting.first(slow.wait(), timeout=0.01)
    assert len(asyncio.all_tasks()) == 1  # only this test: no waiter left behind


async def test_eventually_returns_the_first_true_result_of_a_sync_or_async_probe() -> None:
    calls: list[int] = []

    def probe() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert await waiting.eventually(probe, timeout=5, message="never", interval=0) == 3

    async def async_probe() -> str:
        return "yes"

    assert await waiting.eventually(async_probe, timeout=5, message="never") == "yes"


async def test_eventually_fails_with_its_message_and_the_last_ignored_error() -> None:
    def probe() -> bool:
        raise ConnectionRefusedError("not yet")

    started = time.monotonic()
    with pytest.raises(waiting.WaitTimeoutError, match=r"port 1 never answered.*not yet"):
        await waiting.eventually(
            probe, timeout=0.2, message=lambda: "port 1 never answered", ignoring=(OSError,)
        )
    assert 0.2 <= time.monotonic() - started < 2


async def test_an_async_probe_that_hangs_is_cut_at_the_deadline() -> None:
    with pytest.raises(waiting.WaitTimeoutError, match="hung"):
        await waiting.eventually(asyncio.Event().wait, timeout=0.1, message="hung")


def test_eventually_sync_polls_until_true_or_fails_with_its_message() -> None:
    ticks = iter(range(10))
    assert waiting.eventually_sync(lambda: next(ticks) == 3, timeout=5, message="x", interval=0)
    with pytest.raises(waiting.WaitTimeoutError, match=r"^nothing happened$"):
        waiting.eventually_sync(lambda: False, timeout=0.05, message="nothing happened")
    empty: dict[str, bool] = {}
    with pytest.raises(KeyError):  # an error not ignored is not a timeout
        waiting.eventually_sync(lambda: empty["x"], timeout=5, message="x")


def test_a_caller_may_raise_its_own_error_on_timeout() -> None:
    class SetupError(RuntimeError):
        pass

    with pytest.raises(SetupError, match=r"^no bundle$"):
        waiting.eventually_sync(lambda: b"", timeout=0.01, message="no bundle", error=SetupError)
