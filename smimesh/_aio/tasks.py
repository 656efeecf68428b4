"""Owned background work: a task group that outlives the failure of its children.

`asyncio.TaskGroup` cancels every sibling when one child fails, which is right for the parts of
a process and wrong for a server's connections. `Nursery` owns per-connection tasks: a failing
child is logged and forgotten, the others carry on, and closing the nursery waits for (or
cancels) what is left. A leaf helper: imports nothing else of smimesh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Nursery:
    """Starts tasks it owns; `wait(timeout)` lets them finish, then cancels the stragglers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: task failed", self.name, exc_info=exc)

    async def wait(self, grace: float | None = None) -> bool:
        """Wait until every task ended; after `grace` seconds cancel the rest. True if none was."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
            return True
        except TimeoutError:
            await self.cancel()
            return False

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
