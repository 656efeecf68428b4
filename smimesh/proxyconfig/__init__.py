"""The proxy-config contract shared by the operator and the sidecar: the compiled, immutable
per-proxy configuration (`snapshots.ProxyConfig` and its parts) and the named, versioned
resources it is assembled from (`resources`), the gRPC transport that
carries it (`proxyconfig.proto`, generated `proxyconfig_pb2*`), and the workload labels of the
sidecars' metrics that telemetry reads back (`workloads`). Pure: no I/O.
"""

from smimesh.proxyconfig import inbound, matches, outbound, refs, resources, snapshots, workloads

__all__ = ["inbound", "matches", "outbound", "refs", "resources", "snapshots", "workloads"]
