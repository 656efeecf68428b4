"""The operator's HTTPS webhook server: `/convert` (CRD conversion), `/validate` (SMI
semantics), `/mutate` (sidecar injection) and `/healthz`, on aiohttp.

`running` starts it with `start` and owns `WebhookServer.run` in its task group, which first
points the apiserver at us (`cabundles`). The answers come from the pure builders in
`smimesh.webhooks`; this module only serves them: TLS with a serving certificate from the mesh
CA that follows it (`renewing`; its key made here, never written anywhere), bodies bounded in
size, each request bounded in time, a malformed review answered 400 with what is wrong, an
unexpected failure 500 with a generic message (the traceback goes to our log, never to the
caller). The injector needs the one thing a pure builder cannot know, the namespace's labels:
`IndexedNamespaces` takes them from the operator's `MeshIndex` (and asks the apiserver about a
namespace the index has not seen labelled yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from kubernetes import client

from smimesh.compiler import state
from smimesh.kube import names
from smimesh.operator import authorities, cabundles, delegating, indexing, renewing
from smimesh.webhooks import converting, reviews, validating
from smimesh.webhooks.injection import admission, settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on every request. The apiserver gives up on admission webhooks after the
    configuration's `timeoutSeconds` (at most 30) and on conversion after 30 s."""

    admission_body: int = 8 * MiB
    """An AdmissionReview carries the object and, on UPDATE, the old one (etcd: 1.5 MiB each)."""
    conversion_body: int = 64 * MiB
    """A ConversionReview carries every object of a list request at once."""
    timeout: float = 25.0
    concurrency: int = 16
    """Reviews answered at once; more wait for a slot (within `timeout`)."""


class NamespaceLabels(Protocol):
    async def labels(self, namespace: str) -> Mapping[str, str]: ...


@dataclass
class IndexedNamespaces:
    """Namespace labels for the injector, from the index the operator keeps anyway.

    The index stores what the mesh reads of a namespace (whether it is meshed), which is all
    injection asks. The apiserver calls the injector only for labelled namespaces, so a
    namespace the index does not (yet) know as meshed is read from the apiserver: a label
    added a moment ago must not let a pod escape the mesh.
    """

    index: indexing.MeshIndex
    api: client.ApiClient

    async def labels(self, namespace: str) -> Mapping[str, str]:
        entry = self.index.objects.get(("Namespace", "", "", namespace))
        if isinstance(entry, state.Namespace) and entry.meshed:
            return {names.NAMESPACE_MESH_LABEL: names.ENABLED}
        read = client.CoreV1Api(self.api).read_namespace
        found = await asyncio.to_thread(read, namespace)
        return dict((found.metadata.labels if found.metadata else None) or {})


class BadRequestError(Exception):
    """The request cannot be answered as sent (400/413); the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BadRequestError(413, f"the body is {request.content_length} bytes, over {limit}")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise BadRequestError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError(400, f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequestError(400, "the body is nested too deeply to read") from None


@dataclass
class Webhooks:
    """The request handlers, built on the pure review builders."""

    injection: settings.InjectionSettings
    namespaces: NamespaceLabels
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.limits.concurrency)

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=max(self.limits.admission_body, self.limits.conversion_body)
        )
        app.router.add_post(cabundles.CONVERT_PATH, self.convert)
        app.router.add_post(cabundles.VALIDATE_PATH, self.validate)
        app.router.add_post(cabundles.MUTATE_PATH, self.mutate)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def convert(self, request: web.Request) -> web.Response:
        return await self._answer(request, self.limits.conversion_body, self._converted)

    async def validate(self, request: web.Request) -> web.Response:
        return await self._answer(request, self.limits.admission_body, self._validated)

    async def mutate(self, request: web.Request) -> web.Response:
        return await self._answer(request, self.limits.admission_body, self._mutated)

    async def _converted(self, body: Any) -> dict[str, Any]:
        return await asyncio.to_thread(converting.review, body)

    async def _validated(self, body: Any) -> dict[str, Any]:
        return await asyncio.to_thread(validating.review, body)

    async def _mutated(self, body: Any) -> dict[str, Any]:
        request = reviews.admission_request(body)
        labels: Mapping[str, str] = {}
        if request.kind == "Pod" and request.operation == "CREATE" and request.namespace:
            labels = await self.namespaces.labels(request.namespace)
        return await asyncio.to_thread(
            lambda: admission.review(body, namespace_labels=labels, config=self.injection)
        )

    async def _answer(
        self,
        request: web.Request,
        limit: int,
        build: Callable[[Any], Awaitable[dict[str, Any]]],
    ) -> web.Response:
        try:
            async with asyncio.timeout(self.limits.timeout), self._slots:
                answer = await build(_decode(await _read_body(request, limit)))
        except BadRequestError as exc:
            return web.Response(status=exc.status, text=f"{exc}\n")
        except reviews.MalformedReviewError as exc:
            return web.Response(status=400, text=f"not a review this webhook answers: {exc}\n")
        except TimeoutError:
            log.warning("%s: no answer within %.0fs", request.path, self.limits.timeout)
            return web.Response(status=503, text="the review took too long; try again\n")
        except Exception:
            log.exception("%s: failed to answer a review", request.path)
            return web.Response(status=500, text="internal error; see the operator's log\n")
        return web.json_response(answer)


@dataclass
class WebhookServer:
    """A started server; `run` points the apiserver at it, serves until cancelled, and in
    local mode points the apiserver back at the operator Service when it stops."""

    runner: web.AppRunner
    port: int
    injector: cabundles.CaBundleInjector | None = None
    renewal: renewing.WebhookRenewal | None = None
    """Follows the mesh CA: a new serving certificate, caBundles patched again."""

    async def run(self) -> None:
        try:
            if self.injector is not None:
                await self.injector.run()
            if self.renewal is not None:
                await self.renewal.run()
            await asyncio.Event().wait()
        finally:
            await self.stop()
            if self.injector is not None:
                await self.injector.release()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.runner.cleanup()


async def injection_settings(
    api: client.ApiClient,
    *,
    namespace: str,
    trust_domain: str,
    control_plane_address: str,
    proxy_image: str = settings.InjectionSettings.proxy_image,
) -> settings.InjectionSettings:
    """What the injector adds, for this cluster: native sidecars if its version runs them."""
    version = await asyncio.to_thread(client.VersionApi(api).get_code)
    return settings.InjectionSettings(
        proxy_image=proxy_image,
        mesh_namespace=namespace,
        trust_domain=trust_domain,
        control_plane_address=control_plane_address,
        native_sidecars=settings.supports_native_sidecars(version.git_version),
    )


async def serve(
    api: client.ApiClient,
    holder: authorities.CaHolder,
    index: indexing.MeshIndex,
    *,
    namespace: str,
    address: str,
    url: str | None,
    trust_domain: str,
    grpc_address: str,
    front_proxy: delegating.RequestHeaders | None = None,
    mounts: Sequence[Callable[[web.Application], None]] = (),
    proxy_image: str = settings.InjectionSettings.proxy_image,
) -> WebhookServer:
    """Everything `running` needs in one call: injection settings from the cluster version,
    the serving certificate, the handlers, and the CA bundle patches `run` will make.

    Sidecars reach the config server (`grpc_address`, the bound one) through the operator
    Service; in local mode (`url` given) directly at that address. `mounts` add other APIs
    on the same port (the aggregated TrafficMetrics API); `front_proxy` makes TLS ask for
    the aggregator's client certificate.
    """
    host, _, port = grpc_address.rpartition(":")
    control_plane = (
        f"{host}:{port}" if url is not None else f"{names.OPERATOR_SERVICE}.{namespace}.svc:{port}"
    )
    webhooks = Webhooks(
        await injection_settings(
            api,
            namespace=namespace,
            trust_domain=trust_domain,
            control_plane_address=control_plane,
            proxy_image=proxy_image,
        ),
        IndexedNamespaces(index, api),
    )
    dns, ips = renewing.serving_names(namespace=namespace, address=address, url=url)
    certificate = renewing.ServingCertificate(holder, dns_names=dns, ip_addresses=ips)
    context = renewing.webhook_context(certificate)
    if front_proxy is not None:
        front_proxy.trust(context)
    injector = cabundles.CaBundleInjector(
        api, cabundles.Endpoint(holder.ca.bundle.pem(), url), namespace=namespace
    )
    server = await start(
        webhooks, address=address, ssl_context=context, injector=injector, mounts=mounts
    )
    server.renewal = renewing.WebhookRenewal(certificate, context, injector)
    return server


async def start(
    webhooks: Webhooks,
    *,
    address: str,
    ssl_context: ssl.SSLContext,
    injector: cabundles.CaBundleInjector | None = None,
    mounts: Sequence[Callable[[web.Application], None]] = (),
) -> WebhookServer:
    """Listen on `address` (host:port; port 0 picks one) with TLS; returns the server."""
    host, _, port = address.rpartition(":")
    app = webhooks.application()
    for mount in mounts:
        mount(app)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=30.0)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or None, int(port), ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return WebhookServer(runner, int(bound), injector)
