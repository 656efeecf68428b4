"""Leaf Kubernetes helpers: kubeconfig loading and API clients (`clients`), the names smimesh
gives things (`names`), and the one install path (`installing`, rendering with `kustomizing`).

Used by the operator, the webhooks, the compiler, the local control plane (smimesh.testing)
and the CLI; imports nothing else of smimesh.
"""

from smimesh.kube import clients, installing, kustomizing, names

__all__ = ["clients", "installing", "kustomizing", "names"]
