"""Quantities are exact: "1" and "500m" keep their 2:1 ratio; bad text is a readable error."""

from __future__ import annotations

from fractions import Fraction

import pytest

from smimesh.smi import quantities

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("500m", Fraction(1, 2)),
        ("1k", 1000),
        ("2Ki", 2048),
        ("1e3", 1000),
        (".5", Fraction(1, 2)),
        ("-1", -1),
        ("+3", 3),
        ("1.5G", 1_500_000_000),
        ("7n", Fraction(7, 10**9)),
    ],
)
def test_quantity_text_has_its_exact_value(text: str, value: Fraction) -> None:
    assert quantities.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "5x", "1e1000", "1" * 100, "m", "1.2.3", "0x10"])
def test_malformed_or_unbounded_quantities_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(quantities.QuantityError) as caught:
        quantities.parse_quantity(text)
    assert str(caught.value)


def test_mixed_units_keep_their_ratio() -> None:
    values = [quantities.Quantity.of("1").value, quantities.Quantity.of("500m").value]
    assert quantities.integer_ratio(values, limit=2**31) == [2, 1]


def test_integer_weights_stay_as_written() -> None:
    assert quantities.integer_ratio([Fraction(50), Fraction(50)], limit=2**31) == [50, 50]


def test_ratios_too_wide_for_integers_are_refused() -> None:
    with pytest.raises(quantities.QuantityError):
        quantities.integer_ratio([Fraction(10**18), Fraction(1, 10**9)], limit=2**31)
