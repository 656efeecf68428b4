"""Leader election with the apiserver gone: a round that gets no answer at all (connection
refused, as while kube-apiserver restarts) is a lost round, not the end of the operator. The
fault suite found the opposite: urllib3's MaxRetryError escaped `LeaderElector.run`, the
operator's task group failed and every replica exited during an apiserver restart."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes import client

from smimesh.operator import leading
from smimesh.testing import controlplane


async def test_an_unreachable_apiserver_costs_the_lease_not_the_operator() -> None:
    configuration = client.Configuration()
    configuration.host = f"https://127.0.0.1:{controlplane.free_port()}"  # nobody listens
    configuration.verify_ssl = False
    configuration.retries = 0
    with client.ApiClient(configuration) as api:
        elector = leading.LeaderElector(
            api, namespace="smimesh-system", identity="a", retry_period=0.05
        )
        elector.leadership.set(True)  # it held the Lease when the apiserver went away
        with pytest.raises(TimeoutError):  # still running after many rounds
            async with asyncio.timeout(1.0):
                await elector.run()
        assert elector.is_leader is False
        assert elector.leadership.version == 2  # taken, then lost
