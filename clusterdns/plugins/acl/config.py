"""Parse `acl` lines into rules: zones, then policies of action, query types and source networks.

Parsing only; the handler (handler.py) matches queries against what this builds. Error texts are
CoreDNS's (plugin/acl/setup.go), prefixed with file and line.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dnslib import QTYPE

from clusterdns.corefile import Directive
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.zones import KeyError_, parse_cidr, zones_from_arg

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Action(enum.Enum):
    """What a matching policy does with the query."""

    ALLOW = "allow"
    BLOCK = "block"
    FILTER = "filter"
    DROP = "drop"


SECTIONS: Final = ("type", "net")
"""Keywords that open a section of a policy line (matched case-insensitively, as CoreDNS)."""

QTYPES: Final = {
    **{str(v).upper(): int(k) for k, v in QTYPE.forward.items()},
    **rc.TYPES_BY_NAME,
}
"""Query type mnemonics accepted after `type` (case-sensitive, like miekg/dns StringToType)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """One line inside an `acl` block."""

    action: Action
    qtypes: frozenset[int] | None = None
    """Query types it applies to; None means every type (`type *` or no `type` section)."""
    nets: tuple[Network, ...] | None = None
    """Source networks it applies to; None means every address (`net *` or no `net` section)."""

    def matches(self, qtype: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether this policy applies to a query of `qtype` from `ip`."""
        if self.qtypes is not None and qtype not in self.qtypes:
            return False
        if self.nets is None:
            return True
        return any(ip in net for net in self.nets if net.version == ip.version)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One `acl` line: the zones it covers and its policies, in order."""

    zones: tuple[str, ...]
    """Lower-case absolute zones; the server block's zones when the line names none."""
    policies: tuple[Policy, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AclConfig:
    """Every `acl` line of one server block, in the order written."""

    rules: tuple[Rule, ...]


def parse(lines: Sequence[Directive], block_zones: Sequence[str]) -> AclConfig:
    """Parse the block's `acl` lines.

    Raises:
        CorefileError: a bad zone, action, section, query type or network, naming its line.
    """
    return AclConfig(rules=tuple(parse_rule(d, block_zones) for d in lines))


def parse_rule(d: Directive, block_zones: Sequence[str]) -> Rule:
    """Parse one `acl [ZONES...] { ... }` line."""
    zones: list[str] = []
    for index, text in enumerate(d.values):
        try:
            zones.extend(zones_from_arg(text))
        except KeyError_ as exc:
            raise d.arg_error(index, str(exc)) from exc
    policies = tuple(parse_policy(opt) for opt in d.options)
    return Rule(
        zones=tuple(dict.fromkeys(zones)) if zones else tuple(block_zones),
        policies=policies,
    )


def parse_policy(opt: Directive) -> Policy:
    """Parse `allow|block|filter|drop [type QTYPE...] [net SOURCE...]`."""
    opt.expect_no_block()
    try:
        action = Action(opt.name.lower())
    except ValueError:
        raise opt.error(
            f"unexpected token \"{opt.name}\"; expect 'allow', 'block', 'filter' or 'drop'"
        ) from None
    qtypes: set[int] = set()
    any_type = False
    nets: list[Network] = []
    any_net = False
    has_type = has_net = False
    values = opt.values
    i = 0
    while i < len(values):
        section = values[i].lower()
        if section not in SECTIONS:
            raise opt.arg_error(i, f"unexpected token \"{values[i]}\"; expect 'type | net'")
        j = i + 1
        while j < len(values) and values[j].lower() not in SECTIONS:
            j += 1
        tokens = values[i + 1 : j]
        if not tokens:
            raise opt.arg_error(i, f'no token specified in "{section}" section')
        if section == "type":
            has_type = True
            for k, token in enumerate(tokens, start=i + 1):
                if token == "*":
                    any_type = True
                    break
                code = QTYPES.get(token)
                if code is None:
                    raise opt.arg_error(k, f'unexpected token "{token}"; expect legal QTYPE')
                qtypes.add(code)
        else:
            has_net = True
            for k, token in enumerate(tokens, start=i + 1):
                if token == "*":
                    any_net = True
                    break
                text = token if "/" in token else token + ("/128" if ":" in token else "/32")
                net = parse_cidr(text)
                if net is None:
                    raise opt.arg_error(k, f'illegal CIDR notation "{text}"')
                nets.append(net)
        i = j
    return Policy(
        action=action,
        qtypes=None if any_type or not has_type else frozenset(qtypes),
        nets=None if any_net or not has_net else tuple(nets),
    )
