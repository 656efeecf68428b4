"""The proxy-config contract shared by the operator and the sidecar: the compiled, immutable
per-proxy configuration (`snapshots.ProxyConfig` and its parts) and the gRPC transport that
carries it (`proxyconfig.proto`, generated `proxyconfig_pb2*`). Pure: no I/O.
"""

from smimesh.proxyconfig import inbound, matches, outbound, refs, snapshots

__all__ = ["inbound", "matches", "outbound", "refs", "snapshots"]
