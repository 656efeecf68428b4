"""The router filter for HTTP/1.1: send one request to a cluster with the per-request
deadline, bounded retries, circuit breaking and outlier accounting, and relay the response.

Called by `outbound.OutboundHttp` (to a backend cluster) and `inbound.InboundHttp` (to the
local app); uses `clusters` to pick endpoints, `endpoints.Connector` to dial and pool, and
`http1` to encode and relay. Retries happen only for idempotent requests, only on a connect
failure, a reset before any response byte or a 503, and never once a byte went downstream.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from smimesh.sidecar import clusters, endpoints, http1, relaying, settings, tcp

log = logging.getLogger(__name__)
RETRYABLE_STATUS = 503


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    keep_alive: bool
    endpoint: endpoints.Address | None
    upgraded: endpoints.Connection | None = None  # 101: relay both ways from here


class Forwarder:
    def __init__(self, connector: endpoints.Connector, limits: settings.Limits) -> None:
        self.connector = connector
        self.limits = limits

    async def forward(
        self,
        request: http1.Request,
        writer: asyncio.StreamWriter,
        *,
        cluster: clusters.Cluster,
        payload: bytes,
        deadline: float,
        retries: int,
    ) -> Result:
        budget = cluster.budget
        if budget.overflowing():
            return _local(request, writer, 503, f"smimesh: {cluster.name} overflow (circuit open)")
        await budget.acquire()
        written = [False]
        try:
            async with asyncio.timeout(deadline):
                result = await self._attempts(request, writer, cluster, payload, retries, written)
        except TimeoutError:
            if written[0]:
                return Result(504, False, None)
            return _local(
                request, writer, 504, f"smimesh: {cluster.name} timed out after {deadline:g}s"
            )
        finally:
            budget.release()
        if result.upgraded is not None and request.takeover is not None:
            # The deadline covered the handshake; the upgraded connection lives on its own.
            reader, leftover = request.takeover
            up = result.upgraded
            await tcp.relay(reader, writer, up.reader, up.writer, first=leftover)
        return result

    async def _attempts(
        self,
        request: http1.Request,
        writer: asyncio.StreamWriter,
        cluster: clusters.Cluster,
        payload: bytes,
        retries: int,
        written: list[bool],
    ) -> Result:
        attempts = 1 + (retries if request.idempotent() else 0)
        tried: list[endpoints.EndpointState] = []
        failure = "no endpoint"
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                endpoint = cluster.pick(tried)
            except clusters.NoEndpointError:
                return _local(request, writer, 503, f"smimesh: {cluster.name} has no endpoints")
            tried.append(endpoint)
            endpoint.in_flight += 1
            try:
                conn = endpoint.take_idle(self.limits.idle_timeout)
                if conn is None:
                    try:
                        conn = await self.connector.connect(endpoint.address)
                    except (OSError, TimeoutError) as exc:
                        cluster.record(endpoint, False)
                        failure = f"connect to {endpoint.address} failed: {exc}"
                        continue
                response = relaying.Response(conn.reader, head_only=request.method == "HEAD")
                try:
                    conn.writer.write(payload)
                    status = await response.read_head()
                except (OSError, ConnectionError) as exc:
                    conn.close()
                    cluster.record(endpoint, False)
                    failure = f"{endpoint.address} reset: {exc}"
                    continue
                except BaseException:  # the deadline (cancellation): the exchange is void
                    conn.close()
                    raise
                if response.callbacks.upgraded:
                    cluster.record(endpoint, True)
                    written[0] = True
                    writer.write(bytes(response.buffered))
                    return Result(status, False, endpoint.address, upgraded=conn)
                if status == RETRYABLE_STATUS and not last:
                    cluster.record(endpoint, False)
                    conn.close()
                    failure = f"{endpoint.address} answered 503"
                    continue
                cluster.record(endpoint, status < 500)
                written[0] = True
                try:
                    await response.relay(writer)
                except BaseException:
                    conn.close()
                    raise
                if response.reusable:
                    endpoint.give_back(conn, self.limits.pool_idle_per_endpoint)
                else:
                    if response.stray:
                        log.info(
                            "%s sent bytes past its response: connection closed", endpoint.address
                        )
                    conn.close()
                return Result(status, response.callbacks.keep_alive, endpoint.address)
            finally:
                endpoint.in_flight -= 1
        return _local(request, writer, 503, f"smimesh: {cluster.name}: {failure}")


def _local(
    request: http1.Request, writer: asyncio.StreamWriter, status: int, reason: str
) -> Result:
    """A response the proxy makes itself (no endpoint answered); no body for a HEAD."""
    writer.write(request.answer(status, reason))
    return Result(status, True, None)
