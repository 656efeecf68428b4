"""Scrapes sidecars' `/metrics` (on their metrics-only port) on request: all at once, each
bounded in time, on the event loop (httpx's async client), never blocking the operator.

Called by `aggregating` for the pods the operator's `MeshIndex` knows as meshed with an IP;
parses with `smimesh.telemetry.trafficstats` and hands `trafficmetrics.Sidecar`s back. A
sidecar that does not answer is reported by name, not raised: a list goes on without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from smimesh.compiler import state
from smimesh.kube import names
from smimesh.operator import trafficmetrics
from smimesh.telemetry import trafficstats

METRICS_PORT = names.SIDECAR_METRICS_PORT
"""The sidecars' metrics-only port (the injector's default; local workloads use it too): the
admin port binds 127.0.0.1 in the pod, out of the operator's reach."""
TIMEOUT = 2.0
"""Seconds one sidecar may take to answer."""
PARALLEL = 32
"""Scrapes in flight at once; more wait for a slot."""
MAX_BODY = 16 * 1024 * 1024
"""Bytes of `/metrics` read at most (a sidecar holds 1,000 label sets per family: ~6 MB)."""


@dataclass
class Scraped:
    """What one round of scrapes found: the sidecars that answered, and why others did not."""

    sidecars: list[trafficmetrics.Sidecar] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """`namespace/pod` -> what went wrong."""


@dataclass
class Scraper:
    """One HTTP client for every scrape (connections are reused); `close` when done."""

    port: int = METRICS_PORT
    timeout: float = TIMEOUT
    parallel: int = PARALLEL

    def __post_init__(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
        self._slots = asyncio.Semaphore(self.parallel)

    async def close(self) -> None:
        await self._client.aclose()

    def url(self, pod: state.Pod) -> str:
        host = f"[{pod.ip}]" if pod.ip and ":" in pod.ip else pod.ip
        return f"http://{host}:{self.port}/metrics"

    async def _text(self, pod: state.Pod) -> str:
        async with (
            self._slots,  # the time limit starts once a slot is ours
            asyncio.timeout(self.timeout),
            self._client.stream("GET", self.url(pod)) as response,
        ):
            if response.status_code != 200:
                raise ScrapeError(f"answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise ScrapeError(f"sent over {MAX_BODY} bytes")
            return body.decode(errors="replace")

    async def one(self, pod: state.Pod) -> trafficmetrics.Sidecar:
        """Scrape and parse one pod's sidecar; raises ScrapeError saying what went wrong."""
        if not pod.ip:
            raise ScrapeError(f"pod {pod.namespace}/{pod.name} has no IP")
        try:
            text = await self._text(pod)
        except TimeoutError:
            raise ScrapeError(f"{self.url(pod)}: no answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise ScrapeError(f"{self.url(pod)}: {type(exc).__name__}: {exc}") from None
        except ScrapeError as exc:
            raise ScrapeError(f"{self.url(pod)}: {exc}") from None
        try:
            series, started = await asyncio.to_thread(_parse, text)
        except trafficstats.MetricsError as exc:
            raise ScrapeError(f"{self.url(pod)}: {exc}") from None
        return trafficmetrics.Sidecar(pod.namespace, pod.name, series, started)

    async def all(self, pods: Sequence[state.Pod]) -> Scraped:
        """Every pod's sidecar at once; failures are collected, not raised."""
        results = await asyncio.gather(*(self.one(pod) for pod in pods), return_exceptions=True)
        scraped = Scraped()
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, trafficmetrics.Sidecar):
                scraped.sidecars.append(result)
            elif isinstance(result, ScrapeError):
                scraped.errors[f"{pod.namespace}/{pod.name}"] = str(result)
            else:
                raise result
        return scraped


class ScrapeError(RuntimeError):
    """A sidecar's `/metrics` could not be read; the message says whose and why."""


def _parse(text: str) -> tuple[trafficstats.Scrape, float | None]:
    return trafficstats.parse(text), trafficstats.start_time(text)
