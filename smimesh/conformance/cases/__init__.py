"""The conformance cases, by area: `access`, `specs`, `splits`; all registered in
`registry.CASES` in a stable order."""

from smimesh.conformance.cases import access, registry, specs, splits

CASES = registry.CASES

__all__ = ["CASES", "access", "registry", "specs", "splits"]
