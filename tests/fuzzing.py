"""How every fuzz target runs (`make fuzz`: tests/smi/fuzzing.py and tests/sidecar/fuzzing_*.py):
hypothesis settings with the health checks off (the targets are slow and filter a lot on
purpose), and the time budget, SMIMESH_FUZZ_SECONDS (60 by default), that repeats them.

Not a test module; it imports nothing of smimesh.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from hypothesis import HealthCheck, settings


def examples(count: int, *, deadline: int | None) -> settings:
    """`count` examples a run, each within `deadline` ms (None: no bound, for targets that
    talk to a process), no health check."""
    return settings(max_examples=count, deadline=deadline, suppress_health_check=list(HealthCheck))


def rounds_within_budget(*targets: Callable[[], None]) -> int:
    """Run `targets` one after the other, round after round, until SMIMESH_FUZZ_SECONDS have
    passed (a budget, not a wait: every round runs to its end); the rounds run."""
    deadline = time.monotonic() + float(os.environ.get("SMIMESH_FUZZ_SECONDS", "60"))
    rounds = 0
    while time.monotonic() < deadline:
        for target in targets:
            target()
        rounds += 1
    return rounds
