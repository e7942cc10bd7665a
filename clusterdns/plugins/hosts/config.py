"""HostsConfig and `parse`: the `hosts` directive's arguments and options, checked at setup.

Every problem is raised through `Directive.error()` so it names the Corefile line. This module
reads no file and knows nothing about serving.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import parse_duration
from clusterdns.dnsutil.fallthrough import NEVER, Fallthrough, parse_fallthrough
from clusterdns.dnsutil.zones import KeyError_, zones_from_arg

DEFAULT_PATH: Final = "/etc/hosts"
DEFAULT_TTL_S: Final = 3600
MAX_TTL_S: Final = 65535
DEFAULT_RELOAD_S: Final = 5.0

_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostsConfig:
    """One `hosts` line of a server block, validated."""

    path: str = DEFAULT_PATH
    """The hosts file to read; default `/etc/hosts`."""
    zones: tuple[str, ...]
    """Zones answered for (lower-case, absolute); default the server block's keys."""
    inline: tuple[str, ...] = ()
    """Hosts-file lines written inside the block (before any `fallthrough`), in order."""
    ttl_s: int = DEFAULT_TTL_S
    """TTL of every record, seconds, 1 to 65535; default 3600."""
    auto_reverse: bool = True
    """Generate PTR records for the entries; `no_reverse` turns it off."""
    reload_s: float = DEFAULT_RELOAD_S
    """Seconds between checks of the file for changes; 0 disables; default 5."""
    fallthrough: Fallthrough = NEVER
    """Zones in which a name without entries goes to the next plugin."""
    fallthrough_unsupported: bool = False
    """Also pass types other than A/AAAA/PTR to the next plugin (within `fallthrough`'s zones)."""


def parse(d: Directive, block_zones: Sequence[str]) -> HostsConfig:
    """Parse `hosts [FILE [ZONES...]] { ... }`.

    Raises:
        CorefileError: a bad zone, option or value, naming its line.
    """
    args = d.values
    path = DEFAULT_PATH
    zones: list[str] = []
    if args:
        path = d.path_arg(0)
        for index in range(1, len(args)):
            try:
                zones.extend(zones_from_arg(args[index]))
            except KeyError_ as exc:
                raise d.arg_error(index, str(exc)) from exc
    inline: list[str] = []
    ttl_s = DEFAULT_TTL_S
    auto_reverse = True
    reload_s = DEFAULT_RELOAD_S
    fall = NEVER
    fall_unsupported: Directive | None = None
    for opt in d.options:
        opt.expect_no_block()
        match opt.name:
            case "fallthrough":
                try:
                    fall = parse_fallthrough(opt.values)
                except ValueError as exc:
                    raise opt.error(str(exc)) from exc
            case "fallthrough_unsupported":
                opt.expect_args(0)
                fall_unsupported = opt
            case "no_reverse":
                opt.expect_args(0)
                auto_reverse = False
            case "ttl":
                ttl_s = _ttl(opt)
            case "reload":
                reload_s = _reload(opt)
            case _:
                if fall.enabled:
                    raise opt.error(f"unknown property '{opt.name}'")
                inline.append(" ".join([opt.name, *opt.values]))
    if fall_unsupported is not None and not fall.enabled:
        raise fall_unsupported.error("fallthrough_unsupported requires fallthrough")
    return HostsConfig(
        path=path,
        zones=tuple(dict.fromkeys(zones)) if zones else tuple(block_zones),
        inline=tuple(inline),
        ttl_s=ttl_s,
        auto_reverse=auto_reverse,
        reload_s=reload_s,
        fallthrough=fall,
        fallthrough_unsupported=fall_unsupported is not None,
    )


def _ttl(opt: Directive) -> int:
    values = opt.values
    if not values:
        raise opt.error("ttl needs a time in second")
    if not _INTEGER.fullmatch(values[0]):
        raise opt.error("ttl needs a number of second")
    ttl = int(values[0])
    if not 1 <= ttl <= MAX_TTL_S:
        raise opt.error("ttl provided is invalid")
    return ttl


def _reload(opt: Directive) -> float:
    values = opt.values
    if len(values) != 1:
        raise opt.error("reload needs a duration (zero seconds to disable)")
    try:
        seconds = parse_duration(values[0])
    except ValueError as exc:
        raise opt.error(f"invalid duration for reload '{values[0]}'") from exc
    if seconds < 0:
        raise opt.error(f"invalid negative duration for reload '{values[0]}'")
    return seconds
