"""Leaf Kubernetes helpers: kubeconfig loading, resource names and API clients.

Used by the operator, the local control plane (smimesh.testing) and the CLI; imports nothing
else of smimesh.
"""

from smimesh.kube import clients

__all__ = ["clients"]
