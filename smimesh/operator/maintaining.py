"""The mesh CA's maintenance loop: every replica re-reads the CA Secret and swaps the
`authorities.CaHolder` when its data changed; the leader also applies `rotating.decide` (start
a requested or due rotation, take its next step, renew the issuing CA) and writes the result
back, guarded by the Secret's resourceVersion.

Owned by `running`'s task group. A write that loses to another writer (409) changes nothing
here: the next round reads the winner's Secret and decides again. Each step is logged and
recorded as an Event on the Secret (`kubectl describe secret smimesh-ca`); a warning (e.g. an
issuing CA that cannot be renewed without the root key) is recorded once, not every round.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import urllib3
from kubernetes import client

from smimesh._aio import waiting
from smimesh.identity import errors, rotation, secretdata
from smimesh.kube import names
from smimesh.operator import authorities, leading, rotating

log = logging.getLogger(__name__)

DEFAULT_PERIOD = 30.0
"""Seconds between two looks at the CA Secret."""

Outcome = Literal["unchanged", "swapped", "written", "conflict", "missing", "invalid"]


@dataclass(frozen=True)
class Round:
    """What one look found: the outcome, the steps taken, and the CA to swap in (if any)."""

    outcome: Outcome
    steps: tuple[rotating.Step, ...] = ()
    swap: tuple[rotation.MeshCa, dict[str, str]] | None = None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def describe(state: rotation.MeshCa) -> str:
    """One line for the log: phase, roots trusted, next step."""
    roots = ", ".join(root.subject.rfc4514_string() for root in state.bundle.roots)
    step = f", next step at {state.next_step_at.isoformat()}" if state.next_step_at else ""
    return f"{state.phase.value}, trusting [{roots}]{step}"


@dataclass
class CaMaintainer:
    api: client.ApiClient
    holder: authorities.CaHolder
    elector: leading.LeaderElector
    namespace: str
    trust_domain: str
    policy: rotating.Policy = field(default_factory=rotating.Policy)
    period: float = DEFAULT_PERIOD
    secret_name: str = names.CA_SECRET
    clock: Callable[[], datetime.datetime] = _now
    warned: set[str] = field(default_factory=set)
    """Warnings already recorded (and still true), so each is an Event once."""

    def read(self) -> client.V1Secret | None:
        core = client.CoreV1Api(self.api)
        try:
            return core.read_namespaced_secret(self.secret_name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def write(self, secret: client.V1Secret, data: dict[str, str], handled: str | None) -> bool:
        """Replace the Secret's data as of `secret`'s resourceVersion; False on a conflict."""
        metadata = secret.metadata or client.V1ObjectMeta()
        if handled is not None:
            metadata.annotations = {
                **(metadata.annotations or {}),
                names.ROTATE_HANDLED_ANNOTATION: handled,
            }
        body = client.V1Secret(metadata=metadata, type=secret.type, data=authorities.encode(data))
        try:
            client.CoreV1Api(self.api).replace_namespaced_secret(
                self.secret_name, self.namespace, body
            )
        except client.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def round(self) -> Round:
        """One look (in a worker thread): what the Secret holds; as leader, decide and write
        back. The holder is swapped by the caller, on the event loop."""
        secret = self.read()
        if secret is None:
            return Round("missing")
        data = authorities.decode(secret.data)
        now = self.clock()
        try:
            state = secretdata.load(data, trust_domain=self.trust_domain, now=now)
        except errors.InvalidAuthorityError as exc:
            log.error("the CA Secret %s cannot be used, keeping the CA in memory: %s",
                      self.secret_name, exc)  # fmt: skip
            return Round("invalid")
        seen = (
            Round("swapped", swap=(state, data)) if data != self.holder.data else Round("unchanged")
        )
        if not self.elector.is_leader:
            return seen
        annotations = (secret.metadata.annotations if secret.metadata else None) or {}
        decision = rotating.decide(
            state,
            request=rotating.requested(annotations),
            now=now,
            policy=self.policy,
            new_authority=rotating.fresh_authority(self.trust_domain, self.policy),
        )
        if not decision.changed:
            return Round(seen.outcome, decision.steps, seen.swap)
        written = secretdata.dump(decision.state)
        if not self.write(secret, written, decision.handled):
            return Round("conflict", (), seen.swap)
        return Round("written", decision.steps, (decision.state, written))

    def event(self, step: rotating.Step) -> None:
        secret = self.read()
        uid = secret.metadata.uid if secret is not None and secret.metadata else None
        now = self.clock()
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{self.secret_name}.", namespace=self.namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version="v1",
                kind="Secret",
                name=self.secret_name,
                namespace=self.namespace,
                uid=uid,
            ),
            type="Warning" if step.warning else "Normal",
            reason=step.reason,
            message=step.message,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=names.EVENT_COMPONENT),
        )  # fmt: skip
        client.CoreV1Api(self.api).create_namespaced_event(self.namespace, event)

    def report(self, steps: list[rotating.Step]) -> None:
        """Log every step; record each as an Event (a warning only the first time)."""
        current = {step.reason for step in steps if step.warning}
        self.warned &= current
        for step in steps:
            if step.warning:
                log.warning("mesh CA: %s", step.message)
                if step.reason in self.warned:
                    continue
                self.warned.add(step.reason)
            else:
                log.info("mesh CA: %s", step.message)
            try:
                self.event(step)
            except client.ApiException as exc:
                log.warning("no Event for %s: %s %s", step.reason, exc.status, exc.reason)

    async def run(self) -> None:
        """A round every `period` seconds (at once when leadership changes), until cancelled."""
        leadership = self.elector.leadership
        while True:
            seen = leadership.version  # the round reads leadership; a later change wakes us
            try:
                found = await asyncio.to_thread(self.round)
                if found.swap is not None:
                    self.holder.swap(*found.swap)
                    log.info("mesh CA now %s", describe(found.swap[0]))
                if found.outcome == "conflict":
                    log.info("the CA Secret changed while we wrote it; deciding again next round")
                await asyncio.to_thread(self.report, list(found.steps))
            except (client.ApiException, urllib3.exceptions.HTTPError) as exc:
                log.warning("mesh CA maintenance: %s", exc)
            await waiting.first(leadership.wait_newer(seen), timeout=self.period)
