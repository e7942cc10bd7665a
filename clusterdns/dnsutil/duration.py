"""Go duration syntax (`300ms`, `1.5h`, `2h45m`, `5s`), as every CoreDNS DURATION accepts."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Return seconds for a Go duration string.

    Raises:
        ValueError: the text is not a Go duration (a bare number other than 0 has no unit).
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a Duration (`5s`, `1m30s`, `500ms`)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    out = ""
    rest = seconds
    hours = int(rest // 3600)
    if hours:
        out += f"{hours}h"
        rest -= hours * 3600
    minutes = int(rest // 60)
    if minutes or hours:
        out += f"{minutes}m"
        rest -= minutes * 60
    return out + f"{rest:g}s"
