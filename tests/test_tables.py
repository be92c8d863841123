"""The typed table model: cells carry value, unit, CI, status and note; units.scale picks the
display unit in one place; the text a cell shows is derived, never stored."""

import math

import pytest

from xfbench.reports.tables import Cell, ci_digits, column_unit, line_text, value_text
from xfbench.reports.units import scale, steps_for


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.00123, "s", (1.23, "ms")),
        (0.9996, "s", (0.9996, "s")),  # rounds to 1 s at 3 digits, so it stays in s
        (3 * 2**30, "B", (3.0, "GiB")),
        (2.5e12, "FLOP/s", (2.5, "TFLOP/s")),
        (2.5e3, "FLOP/s", (2500.0, "FLOP/s")),  # no kFLOP/s
        (1.9e10, "B/s", (19.0, "GB/s")),  # bandwidth in SI prefixes
        (6150.0, "tok/s", (6.15, "ktok/s")),
        (0.0021, "J/token", (2.1, "mJ/token")),
        (0, "s", (0.0, "s")),
    ],
)
def test_scale_returns_the_scaled_value_and_its_symbol(value, unit, expected):
    scaled, symbol = scale(value, unit)
    assert symbol == expected[1] and math.isclose(scaled, expected[0], rel_tol=1e-12)


def test_an_unknown_unit_is_an_error_not_a_guess():
    with pytest.raises(KeyError):
        steps_for("furlong")


def test_a_cell_formats_value_ci_label_and_suffix_and_stacks_lines():
    c = Cell(0.0101234, "s", ci_rel=0.02, more=(Cell(0.53, "ratio", suffix=" of peak"),
                                                Cell(1.0, "ratio", label="counted/work ")))
    assert c.text == "10.1 ms ±2.0%\n0.53 of peak\ncounted/work 1.00"
    assert [line_text(x) for x in c.lines] == c.text.splitlines()
    assert c.sort_key == 0.0101234 and c.numeric


def test_a_ci_below_95_percent_says_its_level():
    assert line_text(Cell(1e-3, "s", ci_rel=0.09, ci_level=0.75)) == "1 ms ±9.0% (75% CI)"


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        (Cell(None, "s"), "-"),
        (Cell(math.nan, "B"), "-"),
        (Cell(0.123, "%"), "12.3%"),
        (Cell(2.013, "k"), "2.01"),
        (Cell(125_000_000, "size"), "125M"),
        (Cell(2.028e20, "count"), "2.028e20"),
        (Cell(72.0, "h"), "72 h (3 days)"),
        (Cell("OOM", status="bad"), "OOM"),
    ],
)
def test_each_kind_formats_its_own_way(cell, text):
    assert value_text(cell) == text


@pytest.mark.parametrize(
    ("value", "ci_rel", "digits"),
    [(1.0123e-3, 0.02, 3), (1.0123e-3, 0.001, 4), (1.0123e-3, 0.2, 2), (9.87, 0.02, 2), (123.4, 0.005, 4),
     (1.0, None, 3)],
)
def test_ci_digits_show_what_the_ci_supports(value, ci_rel, digits):
    """The last digit shown is the first digit of the CI half-width (2 to 4 digits)."""
    assert ci_digits(value, ci_rel) == digits


def test_column_unit_is_shared_only_when_every_cell_shows_the_same_symbol():
    assert column_unit([Cell(1e-3, "s"), Cell(5e-3, "s"), Cell(None, "s")]) == "ms"
    assert column_unit([Cell(1e-3, "s"), Cell(5.0, "s")]) is None  # ms and s
    assert column_unit([Cell(1e-3, "s", more=(Cell(1.0, "B"),))]) is None  # stacked
    assert column_unit([Cell("OOM"), Cell(1e-3, "s")]) is None
    assert column_unit([Cell(0.5, "%")]) is None  # a kind, not a unit
