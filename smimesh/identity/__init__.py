"""Mesh identity: SPIFFE-style workload identities, keys, CSRs and the mesh CA, built on
`cryptography`. Pure; the operator serves it, the sidecar uses it to ask for certificates.

Walk it in this order: `spiffe` (the identity) -> `keys` (workload key and CSR) ->
`signingrequests` (the CA's checks) -> `authority` (root, issuing CA, signing) -> `bundles`
(trusted roots) -> `rotation` (switching roots with overlap) -> `secretdata` (the CA as Secret
data) -> `tlscontexts` (mTLS contexts and peer identity). Refusals are typed, in `errors`.
"""

from smimesh.identity import (
    authority,
    bundles,
    errors,
    keys,
    rotation,
    secretdata,
    signingrequests,
    spiffe,
    tlscontexts,
)

__all__ = [
    "authority",
    "bundles",
    "errors",
    "keys",
    "rotation",
    "secretdata",
    "signingrequests",
    "spiffe",
    "tlscontexts",
]
