"""Traffic metrics (`metrics.smi-spec.io/v1alpha1`): TrafficMetrics and TrafficMetricsList.

Served by an aggregated API (not a CRD), so there is one version, no conversion and no CRD;
`documents` parses them and `validating` checks them like the other kinds. Metric values are
Quantities (`"10m"` seconds), compared exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from smimesh.smi import quantities
from smimesh.smi.objects import Model, Resource

__all__ = [
    "GROUP",
    "VERSIONS",
    "Edge",
    "Metric",
    "ObjectRef",
    "TrafficMetrics",
    "TrafficMetricsList",
]

GROUP = "metrics.smi-spec.io"


class ObjectRef(Model):
    kind: str
    name: str | None = None
    namespace: str | None = None


class Edge(Model):
    direction: Literal["to", "from"]
    side: Literal["client", "server"]
    resource: ObjectRef | None = None


class Metric(Model):
    name: str
    unit: str | None = None
    value: quantities.Quantity


class TrafficMetrics(Resource):
    api_version: Literal["metrics.smi-spec.io/v1alpha1"]
    kind: Literal["TrafficMetrics"]
    resource: ObjectRef
    edge: Edge | None = None
    timestamp: datetime | None = None
    window: str | None = None
    metrics: Annotated[list[Metric], Field(default_factory=list)]


class TrafficMetricsItem(Model):
    """An item of a list: apiVersion and kind may be left out."""

    api_version: str | None = None
    kind: str | None = None
    metadata: dict[str, Any] | None = None
    resource: ObjectRef
    edge: Edge | None = None
    timestamp: datetime | None = None
    window: str | None = None
    metrics: Annotated[list[Metric], Field(default_factory=list)]


class TrafficMetricsList(Resource):
    api_version: Literal["metrics.smi-spec.io/v1alpha1"]
    kind: Literal["TrafficMetricsList"]
    resource: ObjectRef | None = None
    selector: dict[str, Any] | None = None
    items: Annotated[list[TrafficMetricsItem], Field(default_factory=list)]


VERSIONS: dict[str, dict[str, type[Resource]]] = {
    "TrafficMetrics": {"v1alpha1": TrafficMetrics},
    "TrafficMetricsList": {"v1alpha1": TrafficMetricsList},
}
