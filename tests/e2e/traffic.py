"""Fixed-rate traffic for the fault suite: real HTTP requests at a set rate through a client
workload's sidecar (its outbound proxy, as the app's HTTP_PROXY is), each one recorded with
when it was sent, when it ended, how (status code or error class) and which app answered.

Open loop: request i is due at start + i / rate whatever happened to the ones before, so a
stall shows up as failures or late answers, not as fewer requests. Bounded in count
(`rate * max_seconds`) and in time (each request's timeout). Used by `test_faults`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from smimesh._aio import waiting


@dataclass(frozen=True)
class Outcome:
    sent: float
    """time.monotonic() when the request was handed to the client."""
    done: float
    result: str
    """The status code ("200") or the error's class name ("ConnectError")."""
    answered_by: str = ""
    """The test app that answered (its `/echo` names it); "" unless 200."""

    @property
    def ok(self) -> bool:
        return self.result == "200"


class FixedRate:
    """`start()`, then `stop()`; `outcomes` holds one entry per request sent."""

    def __init__(
        self,
        proxy: str,
        url: str,
        *,
        rate: float = 50.0,
        workers: int = 16,
        timeout: float = 5.0,
        max_seconds: float = 120.0,
    ) -> None:
        self.proxy, self.url, self.rate, self.timeout = proxy, url, rate, timeout
        self.max_requests = int(rate * max_seconds)
        self.outcomes: list[Outcome] = []
        self.started = self.stopped = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="traffic")
        self._ticker = threading.Thread(target=self._tick, name="traffic-ticker", daemon=True)

    def start(self) -> FixedRate:
        self.started = time.monotonic()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._ticker.join()
        self._pool.shutdown(wait=True)
        self.stopped = time.monotonic()
        for client in self._clients:
            client.close()

    def __enter__(self) -> FixedRate:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def seconds(self) -> float:
        return (self.stopped or time.monotonic()) - self.started

    def _tick(self) -> None:
        for number in range(self.max_requests):
            due = self.started + number / self.rate
            if self._stopping.wait(max(0.0, due - time.monotonic())):
                return
            self._pool.submit(self._one)

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(proxy=self.proxy, timeout=self.timeout, trust_env=False)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _one(self) -> None:
        client = self._client()
        sent = time.monotonic()
        answered_by = ""
        try:
            response = client.get(self.url)
            result = str(response.status_code)
            if response.status_code == 200:
                answered_by = str(response.json().get("app", ""))
        except httpx.HTTPError as exc:
            result = type(exc).__name__
        except ValueError:  # a 200 whose body is not the test app's JSON
            result = "200-not-json"
        with self._lock:
            self.outcomes.append(Outcome(sent, time.monotonic(), result, answered_by))

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.snapshot() if not outcome.ok]

    def causes(self, outcomes: list[Outcome] | None = None) -> Counter[str]:
        """Failed requests counted by status or error class."""
        chosen = self.failures() if outcomes is None else outcomes
        return Counter(outcome.result for outcome in chosen if not outcome.ok)

    def wait_answered_by(
        self, app: str, *, last: int = 25, timeout: float = 30.0, since: float = 0.0
    ) -> float:
        """Until the `last` requests sent after `since` all got their answer from `app`;
        returns when the first of them was sent. Raises AssertionError with who answered."""
        recent: list[Outcome] = []

        def answered() -> float | None:
            nonlocal recent
            recent = sorted((o for o in self.snapshot() if o.sent >= since), key=lambda o: o.sent)[
                -last:
            ]
            if len(recent) == last and all(o.answered_by == app for o in recent):
                return recent[0].sent
            return None

        def who() -> str:
            counts = Counter(o.answered_by or o.result for o in recent)
            return (
                f"the last {last} requests were not all answered by {app} within "
                f"{timeout:.0f}s: {dict(counts)}"
            )

        return waiting.eventually_sync(
            answered, timeout=timeout, message=who, interval=0.1, error=AssertionError
        )


def until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Wait for `condition`, polling; AssertionError naming `what` after `timeout`."""
    waiting.eventually_sync(
        condition,
        timeout=timeout,
        message=f"{what}: not within {timeout:.0f}s",
        interval=0.1,
        error=AssertionError,
    )
