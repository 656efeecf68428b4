"""OpenTelemetry traces: a client span per outbound request and a server span per inbound one,
joined across hops by the W3C `traceparent` header, exported over OTLP/HTTP (JSON) to the
mesh's `tracing_endpoint`. Off (one attribute check per request) when no endpoint is set.

Configured by `running` from each snapshot's MeshSettings; used by `outbound` and `inbound`
around `forwarding`. The exporter is a few lines over httpx, so tracing needs no OTLP package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.sdk import resources
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export
from opentelemetry.trace.propagation import tracecontext

log = logging.getLogger(__name__)
TRACEPARENT = b"traceparent"
TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_PROPAGATOR = tracecontext.TraceContextTextMapPropagator()


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in (attributes or {}).items()]


class OtlpJsonExporter(export.SpanExporter):
    """OTLP/HTTP with JSON encoding (`POST {endpoint}/v1/traces`)."""

    def __init__(self, endpoint: str) -> None:
        self.url = endpoint.rstrip("/") + "/v1/traces"
        self.client = httpx.Client(timeout=5.0)

    def export(self, spans: Sequence[sdk_trace.ReadableSpan]) -> export.SpanExportResult:
        if not spans:
            return export.SpanExportResult.SUCCESS
        resource = spans[0].resource
        body = {
            "resourceSpans": [
                {
                    "resource": {"attributes": _attributes(resource.attributes)},
                    "scopeSpans": [
                        {"scope": {"name": "smimesh.sidecar"}, "spans": [_span(s) for s in spans]}
                    ],
                }
            ]
        }
        try:
            self.client.post(self.url, json=body).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("trace export to %s failed: %s", self.url, exc)
            return export.SpanExportResult.FAILURE
        return export.SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.client.close()


def _span(span: sdk_trace.ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    out: dict[str, Any] = {
        "traceId": format(context.trace_id, "032x"),
        "spanId": format(context.span_id, "016x"),
        "name": span.name,
        "kind": {trace.SpanKind.SERVER: 2, trace.SpanKind.CLIENT: 3}.get(span.kind, 1),
        "startTimeUnixNano": str(span.start_time),
        "endTimeUnixNano": str(span.end_time),
        "attributes": _attributes(span.attributes),
        "status": {"code": {"UNSET": 0, "OK": 1, "ERROR": 2}[span.status.status_code.name]},
    }
    if span.parent is not None:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    return out


class Tracer:
    """The sidecar's tracer; `configure` follows the snapshot's `tracing_endpoint`."""

    def __init__(self) -> None:
        self.endpoint: str | None = None
        self._provider: sdk_trace.TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def configure(self, endpoint: str | None, *, service: str, pod: str) -> None:
        if endpoint == self.endpoint:
            return
        self.shutdown()
        self.endpoint = endpoint
        if endpoint:
            resource = resources.Resource.create({"service.name": service, "k8s.pod.name": pod})
            self._provider = sdk_trace.TracerProvider(resource=resource)
            self._provider.add_span_processor(
                export.BatchSpanProcessor(OtlpJsonExporter(endpoint), schedule_delay_millis=500)
            )
            self._tracer = self._provider.get_tracer("smimesh.sidecar")

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
        self._provider = self._tracer = None

    @contextmanager
    def span(
        self,
        name: str,
        *,
        server: bool,
        headers: Sequence[tuple[bytes, bytes]],
        attributes: Mapping[str, str | int],
    ) -> Iterator[Span]:
        """A span continuing the caller's trace; `Span.headers` carries it to the next hop."""
        assert self._tracer is not None
        carrier = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in headers
            if key.lower() in TRACE_HEADERS
        }
        parent = _PROPAGATOR.extract(carrier)
        kind = trace.SpanKind.SERVER if server else trace.SpanKind.CLIENT
        with self._tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=dict(attributes)
        ) as current:
            outgoing: dict[str, str] = {}
            _PROPAGATOR.inject(outgoing, context=trace.set_span_in_context(current))
            yield Span(current, tuple((k.encode(), v.encode()) for k, v in outgoing.items()))


class Span:
    def __init__(self, span: trace.Span, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self._span = span
        self.headers = headers

    def finish(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self._span.set_status(trace.Status(trace.StatusCode.ERROR))
