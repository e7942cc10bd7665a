"""Parse the `rrl` line: zones, allowances per response category, window, prefixes, slip, table.

Parsing only. Option names, ranges and defaults are those of the CoreDNS external plugin
coredns/rrl (plugins/rrl/setup.go); `exempt-clients` is clusterdns's addition (BIND's name).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.zones import KeyError_, parse_cidr, zones_from_arg

SECOND_NS: Final = 1_000_000_000
DEFAULT_WINDOW_S: Final = 15.0
DEFAULT_IPV4_PREFIX: Final = 24
DEFAULT_IPV6_PREFIX: Final = 56
DEFAULT_MAX_TABLE_SIZE: Final = 100_000
MAX_SLIP_RATIO: Final = 10

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class RrlConfig:
    """The parsed `rrl` line. Every allowance defaults to 0: nothing is limited (off)."""

    zones: tuple[str, ...]
    """Lower-case absolute zones rate limited; the server block's zones if none are given."""
    window_ns: int = int(DEFAULT_WINDOW_S * SECOND_NS)
    """How far an account may go into debt, in nanoseconds of allowance (default 15 s)."""
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX
    """Bits of an IPv4 client address that identify its netblock (1..32, default 24)."""
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    """Bits of an IPv6 client address that identify its netblock (1..128, default 56)."""
    responses_ns: int = 0
    """Nanoseconds of allowance one positive response costs (1 s / responses-per-second); 0 off."""
    nodata_ns: int = 0
    nxdomains_ns: int = 0
    referrals_ns: int = 0
    errors_ns: int = 0
    requests_ns: int = 0
    """Per-netblock request limit (`requests-per-second`, UDP and TCP); 0 off."""
    slip_ratio: int = 0
    """Every N-th limited response is sent empty with TC set instead of dropped; 0 never."""
    max_table_size: int = DEFAULT_MAX_TABLE_SIZE
    """Accounts kept at most; the least recently used is recycled beyond that."""
    report_only: bool = False
    """Count what would be limited, limit nothing."""
    exempt: tuple[Network, ...] = ()
    """Client networks never limited (`exempt-clients`)."""

    @property
    def limits_responses(self) -> bool:
        """Whether any response category has an allowance (the response path is needed)."""
        return any(
            (
                self.responses_ns,
                self.nodata_ns,
                self.nxdomains_ns,
                self.referrals_ns,
                self.errors_ns,
            )
        )


_ALLOWANCES: Final = {
    "responses-per-second": "responses_ns",
    "nodata-per-second": "nodata_ns",
    "nxdomains-per-second": "nxdomains_ns",
    "referrals-per-second": "referrals_ns",
    "errors-per-second": "errors_ns",
    "requests-per-second": "requests_ns",
}
_DEFAULTING: Final = ("nodata_ns", "nxdomains_ns", "referrals_ns", "errors_ns")
"""Allowances that default to responses-per-second when not given."""


def parse(lines: Sequence[Directive], block_zones: Sequence[str]) -> RrlConfig:
    """Parse the block's `rrl` line (only the first line counts, as in coredns/rrl).

    Raises:
        CorefileError: a bad zone, option or value, naming its line.
    """
    d = lines[0]
    zones: list[str] = []
    for index, text in enumerate(d.values):
        try:
            zones.extend(zones_from_arg(text))
        except KeyError_ as exc:
            raise d.arg_error(index, str(exc)) from exc
    values: dict[str, int] = {}
    window_ns = int(DEFAULT_WINDOW_S * SECOND_NS)
    ipv4 = DEFAULT_IPV4_PREFIX
    ipv6 = DEFAULT_IPV6_PREFIX
    slip = 0
    table = DEFAULT_MAX_TABLE_SIZE
    report_only = False
    exempt: list[Network] = []
    for opt in d.options:
        opt.expect_no_block()
        name = opt.name
        if name in _ALLOWANCES:
            values[_ALLOWANCES[name]] = _interval(opt)
        elif name == "window":
            seconds = _number(opt)
            if seconds <= 0:
                raise opt.error("window must be greater than zero")
            window_ns = int(seconds * SECOND_NS)
        elif name == "ipv4-prefix-length":
            ipv4 = _integer(opt, 1, 32)
        elif name == "ipv6-prefix-length":
            ipv6 = _integer(opt, 1, 128)
        elif name == "slip-ratio":
            slip = _integer(opt, 0, MAX_SLIP_RATIO)
        elif name == "max-table-size":
            table = _integer(opt, 0, None)
        elif name == "report-only":
            opt.expect_args(0)
            report_only = True
        elif name == "exempt-clients":
            for index, text in enumerate(opt.expect_args(1, -1)):
                cidr = text if "/" in text else text + ("/128" if ":" in text else "/32")
                net = parse_cidr(cidr)
                if net is None:
                    raise opt.arg_error(index, f"illegal CIDR notation {text!r}")
                exempt.append(net)
        else:
            raise opt.error(f"unknown property '{name}'")
    responses = values.get("responses_ns", 0)
    for key in _DEFAULTING:
        values.setdefault(key, responses)
    return RrlConfig(
        zones=tuple(dict.fromkeys(zones)) if zones else tuple(block_zones),
        window_ns=window_ns,
        ipv4_prefix=ipv4,
        ipv6_prefix=ipv6,
        slip_ratio=slip,
        max_table_size=table,
        report_only=report_only,
        exempt=tuple(exempt),
        **values,
    )


def _number(opt: Directive) -> float:
    text = opt.expect_args(1)[0]
    try:
        value = float(text)
    except ValueError:
        raise opt.arg_error(0, f"{text} invalid value") from None
    if not math.isfinite(value):
        raise opt.arg_error(0, f"{text} invalid value")
    return value


def _interval(opt: Directive) -> int:
    """`ALLOWANCE` per second -> nanoseconds one unit costs (0: not limited)."""
    rate = _number(opt)
    if rate < 0:
        raise opt.arg_error(0, f"{opt.name} cannot be negative")
    if rate == 0:
        return 0
    return max(1, int(SECOND_NS / rate))


def _integer(opt: Directive, low: int, high: int | None) -> int:
    text = opt.expect_args(1)[0]
    if not (text.isascii() and text.lstrip("+-").isdigit()):
        raise opt.arg_error(0, f"{opt.name} {text!r} invalid value")
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise opt.arg_error(0, f"{opt.name} {text!r} must be {bound}")
    return value
