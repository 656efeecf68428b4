"""The SMI TrafficMetrics API (`metrics.smi-spec.io/v1alpha1`) as an aggregated API: the
apiserver proxies `/apis/metrics.smi-spec.io/...` to the operator's HTTPS port (APIService
`v1alpha1.metrics.smi-spec.io`), and this module answers.

Mounted by `running` on the webhook server (`webhooking.start`, one port and certificate).
Each request is authenticated by the front proxy's client certificate and authorized by a
SubjectAccessReview (`delegating`); discovery only needs the front proxy. Pods come from the
operator's `MeshIndex` (meshed, with an IP), their sidecars are scraped on request
(`scraping`), and `trafficmetrics` turns the scrapes into objects; `apiresources` holds
the discovery documents and label selectors. Errors are Kubernetes
`Status` objects; a sidecar that did not answer leaves a list as a `Warning` header.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from smimesh.compiler import state
from smimesh.operator import apiresources, delegating, indexing, scraping, trafficmetrics
from smimesh.smi import metrics

log = logging.getLogger(__name__)

GROUP = metrics.GROUP
PREFIX = f"/apis/{apiresources.GROUP_VERSION}"
LIST = {"kind": "APIGroupList", "apiVersion": "v1"}
GROUP_KIND = {"kind": "APIGroup", "apiVersion": "v1"}


class ApiError(Exception):
    """Answered as a Kubernetes Status with this code and reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


@dataclass
class MetricsApi:
    index: indexing.MeshIndex
    scraper: scraping.Scraper
    authorizer: delegating.Authorizer
    front_proxy: delegating.RequestHeaders | None
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)

    def mount(self, app: web.Application) -> None:
        """Add the API's routes; more specific paths first (aiohttp tries them in order)."""
        route = app.router.add_get
        group = apiresources.api_group
        route("/apis", self._discovery(lambda: {**LIST, "groups": [group()]}))
        route(f"/apis/{GROUP}", self._discovery(lambda: {**GROUP_KIND, **group()}))
        route(PREFIX, self._discovery(apiresources.resource_list))
        route(f"{PREFIX}/namespaces", self._handler(self.list_namespaces))
        route(f"{PREFIX}/namespaces/{{name}}/edges", self._handler(self.namespace_edges))
        route(f"{PREFIX}/namespaces/{{name}}", self._handler(self.get_namespace))
        route(f"{PREFIX}/namespaces/{{namespace}}/{{plural}}", self._handler(self.list_kind))
        route(f"{PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}", self._handler(self.get))
        route(f"{PREFIX}/namespaces/{{namespace}}/{{plural}}/{{name}}/edges",
              self._handler(self.get_edges))  # fmt: skip
        route(f"{PREFIX}/{{plural}}", self._handler(self.list_kind))

    # -- the request pipeline: authenticate, authorize, answer, errors as Status objects

    def _user(self, request: web.Request) -> delegating.User:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        headers = {name.lower(): request.headers.getall(name) for name in request.headers}
        return delegating.authenticate(self.front_proxy, peercert, headers)

    def _discovery(self, body: Callable[[], dict[str, Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                self._user(request)
            except delegating.UnauthenticatedError as exc:
                return status(401, "Unauthorized", str(exc))
            return web.json_response(body())

        return handle

    def _handler(
        self, answer: Callable[[web.Request, delegating.User], Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                user = self._user(request)
                found = await answer(request, user)
            except delegating.UnauthenticatedError as exc:
                return status(401, "Unauthorized", str(exc))
            except ApiError as exc:
                return status(exc.code, exc.reason, str(exc))
            except Exception:
                log.exception("%s: failed to answer", request.path)
                return status(500, "InternalError", "internal error; see the operator's log")
            body, warnings = found
            response = web.json_response(body.to_wire())
            for warning in warnings[:10]:
                response.headers.add("Warning", f'299 - "{_quoted(warning)}"')
            return response

        return handle

    async def _allow(self, user: delegating.User, access: delegating.Access) -> None:
        allowed, reason = await self.authorizer.authorize(user, access)
        if not allowed:
            resource = "/".join(filter(None, (access.resource, access.subresource)))
            named = f" {access.name!r}" if access.name else ""
            where = f" in the namespace {access.namespace!r}" if access.namespace else ""
            because = f": {reason}" if reason else ""
            raise ApiError(
                403,
                "Forbidden",
                f"{resource}.{GROUP}{named} is forbidden: user {user.name!r} cannot "
                f"{access.verb} it{where}{because}",
            )

    # -- what the index knows

    def _pods(self, namespace: str | None = None) -> list[state.Pod]:
        pods = (value for value in self.index.objects.values() if isinstance(value, state.Pod))
        return sorted(
            (p for p in pods if p.meshed and p.ip and namespace in (None, p.namespace)),
            key=lambda p: (p.namespace, p.name),
        )

    def _pod(self, namespace: str, name: str) -> state.Pod:
        pod = self.index.objects.get(("Pod", "", namespace, name))
        if not isinstance(pod, state.Pod):
            raise ApiError(404, "NotFound", f'pods "{name}" not found in namespace "{namespace}"')
        if not pod.meshed:
            raise ApiError(404, "NotFound", f'pod "{namespace}/{name}" is not meshed: no metrics')
        return pod

    async def _scrape(
        self, pods: Sequence[state.Pod]
    ) -> tuple[list[trafficmetrics.Sidecar], list[str]]:
        scraped = await self.scraper.all(pods)
        warnings = [
            f"no metrics from {pod}: {error}" for pod, error in sorted(scraped.errors.items())
        ]
        return scraped.sidecars, warnings

    def _kind(self, plural: str, *, namespaced: bool) -> apiresources.Kinds:
        kind = apiresources.BY_PLURAL.get(plural)
        if kind is None or (namespaced and not kind.namespaced):
            raise ApiError(404, "NotFound", f'the server could not find the resource "{plural}"')
        return kind

    def _now(self) -> datetime.datetime:
        return self.clock().replace(microsecond=0)

    # -- the answers

    async def get(self, request: web.Request, user: delegating.User) -> tuple[Any, list[str]]:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        kind = self._kind(request.match_info["plural"], namespaced=True)
        await self._allow(user, delegating.Access("get", kind.plural, namespace, name))
        target = trafficmetrics.Target(kind.kind, name, namespace)
        sidecars, warnings = await self._sidecars_of(target)
        return trafficmetrics.traffic_metrics(target, sidecars, now=self._now()), warnings

    async def get_edges(self, request: web.Request, user: delegating.User) -> tuple[Any, list[str]]:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        kind = self._kind(request.match_info["plural"], namespaced=True)
        access = delegating.Access("get", kind.plural, namespace, name, subresource="edges")
        await self._allow(user, access)
        target = trafficmetrics.Target(kind.kind, name, namespace)
        sidecars, warnings = await self._sidecars_of(target)
        return trafficmetrics.edge_list(target, sidecars, now=self._now()), warnings

    async def _sidecars_of(
        self, target: trafficmetrics.Target
    ) -> tuple[list[trafficmetrics.Sidecar], list[str]]:
        """A pod's own sidecar (which must answer), or every meshed pod's in the namespace."""
        if target.kind == "Pod" and target.namespace is not None:
            pod = self._pod(target.namespace, target.name)
            if not pod.ip:
                raise ApiError(
                    503, "ServiceUnavailable", f"pod {pod.namespace}/{pod.name} has no IP yet"
                )
            try:
                return [await self.scraper.one(pod)], []
            except scraping.ScrapeError as exc:
                raise ApiError(
                    503, "ServiceUnavailable", f"no metrics from its sidecar: {exc}"
                ) from None
        namespace = target.namespace if target.kind != "Namespace" else target.name
        if (
            target.kind == "Namespace"
            and ("Namespace", "", "", target.name) not in self.index.objects
        ):
            raise ApiError(404, "NotFound", f'namespaces "{target.name}" not found')
        sidecars, warnings = await self._scrape(self._pods(namespace))
        if target.kind == "Deployment" and target not in trafficmetrics.deployments(
            target.namespace or "", sidecars
        ):
            raise ApiError(
                404,
                "NotFound",
                f"no sidecar reports deployment {target.name!r} in namespace "
                f"{target.namespace!r} (a Deployment is known by its traffic)",
            )
        return sidecars, warnings

    async def get_namespace(
        self, request: web.Request, user: delegating.User
    ) -> tuple[Any, list[str]]:
        name = request.match_info["name"]
        await self._allow(user, delegating.Access("get", "namespaces", name=name))
        target = trafficmetrics.Target("Namespace", name)
        sidecars, warnings = await self._sidecars_of(target)
        return trafficmetrics.traffic_metrics(target, sidecars, now=self._now()), warnings

    async def namespace_edges(
        self, request: web.Request, user: delegating.User
    ) -> tuple[Any, list[str]]:
        name = request.match_info["name"]
        await self._allow(
            user, delegating.Access("get", "namespaces", name=name, subresource="edges")
        )
        target = trafficmetrics.Target("Namespace", name)
        sidecars, warnings = await self._sidecars_of(target)
        return trafficmetrics.edge_list(target, sidecars, now=self._now()), warnings

    async def list_namespaces(
        self, request: web.Request, user: delegating.User
    ) -> tuple[Any, list[str]]:
        await self._allow(user, delegating.Access("list", "namespaces"))
        pods = self._pods()
        sidecars, warnings = await self._scrape(pods)
        targets = [trafficmetrics.Target("Namespace", name) for name in {p.namespace for p in pods}]
        found = trafficmetrics.traffic_metrics_list(
            "Namespace", None, targets, sidecars, now=self._now()
        )
        return found, warnings

    async def list_kind(self, request: web.Request, user: delegating.User) -> tuple[Any, list[str]]:
        """Pods or Deployments, in one namespace or (no `namespace` in the path) in all."""
        namespace = request.match_info.get("namespace")
        kind = self._kind(request.match_info["plural"], namespaced=True)
        await self._allow(user, delegating.Access("list", kind.plural, namespace))
        selected = apiresources.label_filter(request.query.get("labelSelector", ""))
        pods = self._pods(namespace)
        sidecars, warnings = await self._scrape(pods)
        targets: Iterable[trafficmetrics.Target]
        if kind.kind == "Pod":
            targets = [
                trafficmetrics.Target("Pod", p.name, p.namespace)
                for p in pods
                if selected(p.labels)
            ]
        else:
            targets = [
                t
                for ns in sorted({p.namespace for p in pods})
                for t in trafficmetrics.deployments(ns, sidecars)
            ]
        found = trafficmetrics.traffic_metrics_list(
            kind.kind, namespace, targets, sidecars, now=self._now()
        )
        return found, warnings


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")[:500]
