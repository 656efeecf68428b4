"""The proxy-config contract shared by the operator and the sidecar: the compiled,
immutable per-proxy configuration and its protobuf/gRPC schema. Pure.
"""
