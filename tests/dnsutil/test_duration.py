"""Go duration syntax: parse_duration and format_duration (Go's time.Duration.String)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterdns.dnsutil.duration import format_duration, parse_duration

MAX_NS = (1 << 63) - 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        ("5s", 5.0),
        ("0", 0.0),
        ("-0", 0.0),
        ("+0", 0.0),
        ("0s", 0.0),
        ("1ns", 1e-9),
        ("1us", 1e-6),
        ("1µs", 1e-6),  # U+00B5 MICRO SIGN
        ("1μs", 1e-6),  # U+03BC GREEK SMALL LETTER MU
        ("1.5µs", 1.5e-6),
        ("1ms", 1e-3),
        ("1m", 60.0),
        ("-1.5h", -5400.0),
        ("+5s", 5.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("1h1m1s", 3661.0),
        ("1h0.5m", 3630.0),
        ("0.000000001s", 1e-9),
        ("0.0000000009s", 0.0),  # below a nanosecond: truncated, as in Go
        ("9223372036854775807ns", MAX_NS / 1e9),
        ("-9223372036854775808ns", -(MAX_NS + 1) / 1e9),
        ("2562047h", 2562047 * 3600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "s",
        "5x",
        "5S",
        "5sec",
        "1h2",
        "-",
        "+",
        ".s",
        "5.5.5s",
        " 5s",
        "5s ",
        "5 s",
        "1e3s",
        "\u0665s",  # ARABIC-INDIC DIGIT FIVE: Go accepts ASCII digits only
        "2562048h",
        "9223372036854775808ns",
        "1" * 40 + "s",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"time: invalid duration {text!r}"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (5.0, "5s"),
        (1.5, "1.5s"),
        (90.0, "1m30s"),
        (100.25, "1m40.25s"),
        (3600.0, "1h0m0s"),
        (5400.0, "1h30m0s"),
        (9900.0, "2h45m0s"),
        (0.5, "500ms"),
        (0.3, "300ms"),
        (0.0015, "1.5ms"),
        (1.5e-6, "1.5µs"),
        (1e-6, "1µs"),
        (5e-9, "5ns"),
        (-5.0, "-5s"),
        (-0.5, "-500ms"),
        (-5400.0, "-1h30m0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=-(2**50), max_value=2**50))
def test_format_then_parse_round_trips(ns: int) -> None:
    seconds = ns / 1e9
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
