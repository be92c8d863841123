"""Option parsers: sweeps, choices, byte sizes, and their one-line errors."""

import pytest

from xfbench.cli.parse import parse_bytes, parse_choices, parse_int_sweep
from xfbench.reports.errors import BadInput


def test_geometric_and_arithmetic_ranges_and_lists():
    assert parse_int_sweep("256:4096:x2") == [256, 512, 1024, 2048, 4096]
    assert parse_int_sweep("128:512:+128") == [128, 256, 384, 512]
    assert parse_int_sweep("1024,512,512") == [512, 1024]
    assert parse_int_sweep("100:1000:x3") == [100, 300, 900]
    assert parse_int_sweep("64, 256:512:x2") == [64, 256, 512]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("0", "not a positive integer"),
        ("-5", "not a positive integer"),
        ("12.5", "not a positive integer"),
        ("abc", "not a positive integer"),
        ("512:256:x2", "ends before it starts"),
        ("256:512:x1", "factor of at least 2"),
        ("256:512", "START:STOP"),
        ("256:512:y2", "must be xFACTOR or +STEP"),
        ("1:100000:+1", "more than"),
        ("99999999999999999999", "larger than"),
        ("", "no values"),
    ],
)
def test_bad_sweeps_name_the_option(text, fragment):
    with pytest.raises(BadInput) as e:
        parse_int_sweep(text, "--seq-lens")
    assert "--seq-lens" in str(e.value) and fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_choices_keep_order_and_reject_unknown():
    assert parse_choices("sdpa, naive,sdpa", ("naive", "sdpa"), "--impl") == ["sdpa", "naive"]
    with pytest.raises(BadInput, match="unknown value 'flashy'"):
        parse_choices("flashy", ("naive", "sdpa"), "--impl")


def test_bytes():
    assert parse_bytes("2GiB", "--mem-limit") == 2 * 2**30
    assert parse_bytes("500MB", "--mem-limit") == 500 * 10**6
    assert parse_bytes("1048576", "--mem-limit") == 2**20
    assert parse_bytes("1.5k", "--mem-limit") == 1500
    for bad in ("lots", "-1GiB", "0", "3 parsecs"):
        with pytest.raises(BadInput):
            parse_bytes(bad, "--mem-limit")
