"""LoadBalanceConfig and `parse`: the `loadbalance` lines of a block, checked at setup.

Every problem is raised through `Directive.error()` so it names the Corefile line. This module
reads no file and knows nothing about replies.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import parse_duration

DEFAULT_RELOAD_S: Final = 30.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Policy(enum.Enum):
    """How a reply's address records are reordered."""

    ROUND_ROBIN = "round_robin"
    """Shuffle A/AAAA and MX records uniformly (the default)."""
    WEIGHTED = "weighted"
    """Move one address to the top, chosen with the weights of a weight file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalanceConfig:
    """The effective `loadbalance` line of a server block (the last one written)."""

    policy: Policy = Policy.ROUND_ROBIN
    """The reordering policy; default round_robin."""
    weight_file: str = ""
    """The weight file (weighted only)."""
    reload_s: float = DEFAULT_RELOAD_S
    """Seconds between checks of the weight file for changes; 0 disables; default 30."""
    prefer: tuple[Network, ...] = ()
    """Networks whose addresses are moved to the front after shuffling, in priority order."""


def parse_cidr(text: str) -> Network | None:
    """A network written `ADDRESS/LENGTH` (host bits allowed, as Go's net.ParseCIDR), or None."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _parse_weighted_options(d: Directive) -> float:
    reload_s = DEFAULT_RELOAD_S
    for opt in d.options:
        opt.expect_no_block()
        if opt.name != "reload":
            raise opt.error(f"unknown property '{opt.name}'")
        if not opt.args:
            raise opt.error("reload duration value is missing")
        if len(opt.args) > 1:
            raise opt.arg_error(1, "unexpected argument")
        text = opt.values[0]
        try:
            reload_s = parse_duration(text)
        except ValueError:
            reload_s = -1.0
        if reload_s < 0:
            raise opt.arg_error(0, f"invalid reload duration '{text}'")
    return reload_s


def _parse_prefer(d: Directive) -> tuple[Network, ...]:
    networks: list[Network] = []
    for opt in d.options:
        opt.expect_no_block()
        if opt.name != "prefer":
            raise opt.error(f"unknown property '{opt.name}'")
        for index, text in enumerate(opt.values):
            net = parse_cidr(text)
            if net is None:
                raise opt.arg_error(index, f'invalid CIDR "{text}"')
            networks.append(net)
    return tuple(networks)


def parse_line(d: Directive) -> LoadBalanceConfig:
    """Parse one `loadbalance [round_robin | weighted WEIGHTFILE] { ... }` line.

    Raises:
        CorefileError: an unknown policy or option, a missing or extra argument, a bad duration
            or CIDR, naming its line.
    """
    args = d.values
    if not args or args[0] == Policy.ROUND_ROBIN.value:
        if len(args) > 1:
            raise d.arg_error(1, f"unknown property for {args[0]}")
        return LoadBalanceConfig(prefer=_parse_prefer(d))
    if args[0] == Policy.WEIGHTED.value:
        if len(args) < 2:
            raise d.error("missing weight file argument")
        if len(args) > 2:
            raise d.arg_error(2, "unexpected argument(s)")
        return LoadBalanceConfig(
            policy=Policy.WEIGHTED, weight_file=d.path_arg(1), reload_s=_parse_weighted_options(d)
        )
    raise d.arg_error(0, f"unknown policy: {args[0]}")


def parse(lines: Sequence[Directive]) -> LoadBalanceConfig:
    """Parse every `loadbalance` line of a block; the last one takes effect.

    Raises:
        CorefileError: any line is invalid.
    """
    configs = [parse_line(d) for d in lines]
    return configs[-1]
