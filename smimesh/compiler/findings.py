"""What the compiler found wrong or noteworthy about SMI objects, for status and Events.

Produced by `splits` and `targets`; the operator's status writer turns each `Finding` into a
condition on the named object and, when it changes, an Event. Pure data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

ConditionType = Literal["Accepted", "ResolvedRefs"]


class Finding(BaseModel):
    """A condition that is not simply True: `status` False, or True with a warning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["TrafficSplit", "TrafficTarget"]
    namespace: str
    name: str
    condition: ConditionType
    status: bool
    reason: str
    message: str
    warning: bool = True

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


def ordered(found: Iterable[Finding]) -> tuple[Finding, ...]:
    """Findings in the compiler's output order: by object, then condition, reason, message."""
    return tuple(sorted(found, key=lambda f: (f.key, f.condition, f.reason, f.message)))
