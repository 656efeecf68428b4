"""smimesh: a service mesh for Kubernetes built around the Service Mesh Interface (SMI).

The package is layered as in DESIGN.md; `make test` checks the layering with import-linter.
"""

__version__ = "0.1.0"
