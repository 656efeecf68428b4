"""Exponential backoff with full jitter, for reconnect loops (the sidecar's config client,
the operator's watches). A leaf helper: imports nothing else of smimesh.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays grow from `initial` by `factor` up to `maximum`; `reset()` after a success.

    Full jitter (a uniform delay in [0, ceiling]) keeps a fleet of reconnecting sidecars from
    hammering a restarted server in lockstep.
    """

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    _ceiling: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._ceiling = self.initial if self._ceiling == 0.0 else self._ceiling * self.factor
        self._ceiling = min(self._ceiling, self.maximum)
        return random.uniform(self._ceiling / 2, self._ceiling)

    def reset(self) -> None:
        self._ceiling = 0.0

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())
