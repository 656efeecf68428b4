"""Admission webhooks: sidecar injection, SMI validation and CRD conversion, as pure
builders plus thin serving glue used by the operator and the CLI.

`reviews` parses AdmissionReview/ConversionReview bodies and builds their responses;
`converting` (CRD conversion), `validating` (SMI semantics) and `injection` (the sidecar) each
answer one review. The operator's `webhooking` serves them over HTTPS.
"""

from smimesh.webhooks import converting, injection, reviews, validating

__all__ = ["converting", "injection", "reviews", "validating"]
