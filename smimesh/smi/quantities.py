"""Kubernetes Quantities (`"500m"`, `"1Ki"`, `5`) with exact arithmetic.

Used by `smimesh.smi.split` for TrafficSplit v1alpha1 weights and by `smimesh.smi.metrics`;
`smimesh.smi.conversion` turns them into the hub's integer weights. Values are Fractions, so
`"1"` and `"500m"` keep their 2:1 ratio; the text a producer wrote is kept for round trips.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["Quantity", "QuantityError", "integer_ratio", "parse_quantity"]

# The apiserver's int-or-string quantity pattern (the upstream CRD's), kept for the CRDs.
PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_SYNTAX = re.compile(
    r"(?P<sign>[+-])?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>[KMGTPE]i)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
MAX_TEXT = 64
MAX_EXPONENT = 64


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity (or one too large to handle safely)."""


def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity string; raises QuantityError with a readable reason."""
    if len(text) > MAX_TEXT:
        raise QuantityError(f"quantity longer than {MAX_TEXT} characters")
    found = _SYNTAX.fullmatch(text)
    if found is None:
        raise QuantityError(
            f'{text!r} is not a quantity (examples: 5, "5", "500m", "1k", "2Ki", "1e3")'
        )
    value = Fraction(found["number"])
    if found["binary"]:
        value *= 1024 ** _BINARY[found["binary"]]
    elif found["decimal"]:
        value *= Fraction(10) ** _DECIMAL[found["decimal"]]
    elif found["exponent"] is not None:
        exponent = int(found["exponent"])
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(f"exponent {exponent} is out of range (at most {MAX_EXPONENT})")
        value *= Fraction(10) ** exponent
    return -value if found["sign"] == "-" else value


@dataclass(frozen=True)
class Quantity:
    """A quantity as written (an int or a string) and its exact value."""

    written: int | str
    value: Fraction

    @classmethod
    def of(cls, written: int | str) -> Quantity:
        if isinstance(written, bool):
            raise QuantityError("a quantity is an integer or a string, not a boolean")
        if isinstance(written, int):
            return cls(written, Fraction(written))
        return cls(written, parse_quantity(written))

    def __str__(self) -> str:
        return str(self.written)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(raw: Any) -> Quantity:
            if isinstance(raw, Quantity):
                return raw
            if isinstance(raw, float):
                raise ValueError(
                    "a quantity is an integer or a string; write fractions as a string "
                    'such as "500m"'
                )
            if not isinstance(raw, int | str):
                raise ValueError("a quantity is an integer or a string")
            try:
                return cls.of(raw)
            except QuantityError as error:
                raise ValueError(str(error)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda quantity: quantity.written
            ),
        )


def integer_ratio(values: list[Fraction], *, limit: int) -> list[int]:
    """Smallest-denominator integers in exactly the same ratio as `values`.

    Values that are already integers stay as they are (Flagger's 50/50 stays 50/50);
    otherwise all are scaled by the least common denominator ("1", "500m" -> 2, 1).
    Raises QuantityError when a result would exceed `limit`.
    """
    scale = 1
    for value in values:
        scale = math.lcm(scale, value.denominator)
    result = [int(value * scale) for value in values]
    if any(abs(number) > limit for number in result):
        raise QuantityError(
            f"these weights span too many orders of magnitude to express exactly as "
            f"integers of at most {limit}"
        )
    return result
