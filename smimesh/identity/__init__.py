"""Mesh identity: SPIFFE-style workload identities, keys, CSRs and the mesh CA, built on
`cryptography`. Pure; the operator serves it, the sidecar uses it to ask for certificates.
"""
