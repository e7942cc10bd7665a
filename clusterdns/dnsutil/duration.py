"""Go duration syntax (`300ms`, `1.5h`, `2h45m`, `5s`), as every CoreDNS DURATION accepts.

Parsing and formatting work in integer nanoseconds, as Go's time.Duration does, so values such
as `300ms` come out as the nearest float (0.3) and print back the way CoreDNS logs them.
Durations are returned in seconds (float); nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import re
from typing import Final

_NS_PER: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)?")
_MAX_NS: Final = (1 << 63) - 1
"""The largest Go time.Duration (about 292 years)."""


def parse_duration(text: str) -> float:
    """Return seconds for a Go duration string (`-1.5h`, `300ms`, `0`).

    Raises:
        ValueError: the text is not a Go duration (a bare number other than 0 has no unit), or
            it does not fit a Go Duration.
    """
    invalid = ValueError(f"time: invalid duration {text!r}")
    s = text
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise invalid
    total_ns = 0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.end() == pos:
            raise invalid
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        if (not whole and not frac) or unit is None:
            raise invalid
        if len(whole) > 30:
            raise invalid
        frac = frac[:30]  # digits below a nanosecond never count
        scale = _NS_PER[unit]
        total_ns += int(whole or "0") * scale + int(frac or "0") * scale // 10 ** len(frac)
        if total_ns > _MAX_NS + (1 if negative else 0):
            raise invalid
        pos = m.end()
    return (-total_ns if negative else total_ns) / 1e9


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a Duration (`5s`, `1m30s`, `1h0m0s`, `500ms`, `1.5µs`)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_decimal(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_decimal(u, 6)}ms"
    out = f"{_decimal(u % 60_000_000_000, 9)}s"
    minutes = u // 60_000_000_000
    if minutes:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours:
            out = f"{hours}h{out}"
    return sign + out


def _decimal(value: int, digits: int) -> str:
    """`value / 10**digits` in decimal, without trailing zeros or a bare point."""
    whole, frac = divmod(value, 10**digits)
    fraction = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{fraction}" if fraction else str(whole)
