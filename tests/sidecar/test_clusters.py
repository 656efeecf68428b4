"""Cluster internals that sockets cannot pin down precisely: power-of-two-choices prefers the
less loaded endpoint, the circuit breaker's queue hands slots over in order and survives
cancelled waiters."""

from __future__ import annotations

import asyncio
import collections

import pytest

from smimesh.sidecar import clusters, endpoints, settings

pytestmark = pytest.mark.fast


def _cluster(count: int) -> clusters.Cluster:
    registry = clusters.Registry(settings.Limits(), settings.Outliers())
    return registry.cluster(
        "shop/web:80",
        namespace="shop",
        service="web",
        addresses=[endpoints.Address(f"10.0.0.{i}", 80) for i in range(count)],
    )


def test_power_of_two_choices_never_picks_the_busiest_and_spreads_the_rest() -> None:
    cluster = _cluster(4)
    cluster.members[0].in_flight = 100
    picks = collections.Counter(cluster.pick().address.host for _ in range(6000))
    assert "10.0.0.0" not in picks  # it loses every comparison it is drawn into
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert abs(picks[host] / 6000 - 1 / 3) < 0.04, picks  # sd 0.6 pp


def test_excluded_endpoints_are_skipped_unless_nothing_else_is_left() -> None:
    cluster = _cluster(2)
    first, second = cluster.members
    assert all(cluster.pick([first]) is second for _ in range(50))
    assert cluster.pick([first, second]) in (first, second)


async def test_budget_queues_beyond_the_limit_and_hands_slots_over() -> None:
    budget = clusters.Budget(max_connections=1, max_pending=2)
    await budget.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await budget.acquire()
        order.append(name)

    a = asyncio.create_task(wait("a"))
    b = asyncio.create_task(wait("b"))
    c = asyncio.create_task(wait("c"))
    await asyncio.sleep(0)
    assert budget.pending == 3
    assert budget.overflowing()
    b.cancel()
    await asyncio.sleep(0)
    assert budget.pending == 2
    budget.release()
    await asyncio.sleep(0)
    budget.release()
    await asyncio.gather(a, c)
    assert order == ["a", "c"]
    assert budget.active == 1
    budget.release()
    assert budget.active == 0
    assert b.cancelled()
