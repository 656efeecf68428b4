"""A real Kubernetes control plane as local processes (etcd + kube-apiserver) and, later,
local workloads: used by our tests, `make demo`, and users without Docker.
"""
