"""What every SMI object shares: object metadata and the model configuration.

The group modules (`split`, `access`, `specs`, `metrics`) build their versioned models on
`Model` and `Resource`; `conversion` reads and writes `ObjectMeta.annotations`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["Model", "ObjectMeta", "Resource"]


class Model(BaseModel):
    """Frozen, camelCase on the wire, unknown fields refused (as `kubectl` does by default)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class ObjectMeta(BaseModel):
    """Kubernetes object metadata: the fields we read, and every other field kept as is."""

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Resource(Model):
    """A top-level object: `apiVersion`, `kind`, `metadata` and an optional `status`.

    Subclasses narrow `api_version` and `kind` to Literals; `status` is written by
    controllers and kept verbatim.
    """

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    status: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes JSON (absent fields left out, `[]` kept)."""
        return self.model_dump(mode="json", exclude_none=True)
