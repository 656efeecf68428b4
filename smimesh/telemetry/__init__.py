"""Reading the sidecars' own Prometheus metrics (`osm_request_total`,
`osm_request_duration_ms`): parsing, deltas, grouping and quantiles. Pure: no I/O.

The sidecar writes these metrics (`smimesh.sidecar.metrics`); `kubectl smi stat|top`, the
operator's TrafficMetrics API and end-to-end tests read them through this package.
"""

from smimesh.telemetry import trafficstats

__all__ = ["trafficstats"]
