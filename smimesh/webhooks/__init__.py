"""Admission webhooks: sidecar injection, SMI validation and CRD conversion, as pure
builders plus thin serving glue used by the operator and the CLI.
"""

from smimesh.webhooks import injection

__all__ = ["injection"]
