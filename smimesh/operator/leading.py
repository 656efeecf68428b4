"""Leader election on a coordination.k8s.io Lease: of several operator replicas, one writes
status and Events; all of them watch and serve config.

Used by `running` (starts `LeaderElector.run`); `statuses`, `maintaining` and `authorities`
read `leadership`, a versioned value: each remembers the version it acted on and waits for a
newer one, so no reader clears a flag another one waits on and none spins on it. The
classic client-go algorithm: hold the Lease by renewing it every `retry_period`; a replica
takes it over once the holder's `renewTime + leaseDurationSeconds` has passed; writes use the
Lease's resourceVersion, so two replicas can never both win. A round that cannot reach the
apiserver (restarted, etcd down) counts as not holding the Lease: the replica steps down and
keeps trying, it never exits over it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass, field

import urllib3
from kubernetes import client

from smimesh._aio import waiting
from smimesh.kube import names

log = logging.getLogger(__name__)

UNREACHABLE = (urllib3.exceptions.HTTPError, OSError)
"""What the client raises when it gets no answer at all (refused, reset, timed out)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class LeaderElector:
    api: client.ApiClient
    namespace: str
    identity: str
    name: str = names.OPERATOR_LEASE
    lease_duration: float = 15.0
    retry_period: float = 2.0
    leadership: waiting.Versioned[bool] = field(default_factory=lambda: waiting.Versioned(False))
    """Whether this replica holds the Lease; its version counts the transitions."""

    @property
    def is_leader(self) -> bool:
        return self.leadership.value

    def _spec(self, transitions: int, acquired: datetime.datetime) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, round(self.lease_duration)),
            acquire_time=acquired,
            renew_time=_now(),
            lease_transitions=transitions,
        )

    def try_acquire(self) -> bool:
        """One round: create, renew or take over the Lease. True if we hold it afterwards."""
        leases = client.CoordinationV1Api(self.api)
        try:
            lease = leases.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(0, _now()),
            )
            try:
                leases.create_namespaced_lease(self.namespace, body)
            except client.ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        duration = spec.lease_duration_seconds or self.lease_duration
        expired = renewed is None or renewed + datetime.timedelta(seconds=duration) < _now()
        if holder != self.identity and holder and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquired = spec.acquire_time if holder == self.identity and spec.acquire_time else _now()
        lease.spec = self._spec(transitions, acquired)
        try:
            leases.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as exc:
            if exc.status == 409:  # somebody else wrote first
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up on a clean stop, so a peer takes over at once."""
        if not self.is_leader:
            return
        leases = client.CoordinationV1Api(self.api)
        try:
            lease = leases.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                leases.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as exc:
            log.warning("could not release lease %s: %s", self.name, exc.reason)
        except UNREACHABLE as exc:
            log.warning("could not release lease %s: apiserver unreachable (%s)", self.name, exc)

    async def run(self) -> None:
        """Keep trying; set `leadership` on every transition (the Lease given up last)."""
        try:
            while True:
                try:
                    held = await asyncio.to_thread(self.try_acquire)
                except client.ApiException as exc:
                    log.warning("lease %s: %s %s", self.name, exc.status, exc.reason)
                    held = False
                except UNREACHABLE as exc:
                    log.warning("lease %s: apiserver unreachable (%s)", self.name, exc)
                    held = False
                if held != self.is_leader:
                    self.leadership.set(held)
                    log.info("%s %s leadership", self.identity, "took" if held else "lost")
                await asyncio.sleep(self.retry_period)
        finally:
            await asyncio.shield(asyncio.to_thread(self.release))
            if self.is_leader:  # set here, on the loop: `release` runs in a worker thread
                self.leadership.set(False)
