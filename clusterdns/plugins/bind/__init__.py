"""# bind

## Name

*bind* - overrides the host addresses a server block listens on.

## Description

Without *bind* a server block listens on the wildcard address: every IPv4 and IPv6 address of the
host. With it, the block listens only on the addresses listed. Each argument is an IP address or
the name of a network interface; an interface name stands for every IPv4 and IPv6 address that
interface has when the configuration is loaded (an IPv6 link-local address is scoped to its
interface, e.g. `fe80::1%eth0`). Addresses named in an `except` line inside the directive's block
are removed from the addresses of that line, which is the way to take, say, the link-local
address of an interface out. Several `bind` lines in one block add up. Addresses are written in
their canonical form and listed once, in the order first given.

An argument that is neither an IP address nor the name of an interface is an error, and so is a
set of `bind` lines that leaves no address at all (everything excluded, or only interfaces that
have no address). The addresses also appear in the `server` label of the metrics
(`dns://127.0.0.1:53`).

*bind* only configures the block; it takes no part in answering queries.

## Syntax

~~~ txt
bind ADDRESS|IFACE ... {
    except ADDRESS|IFACE ...
}
~~~

* **ADDRESS|IFACE** an IP address, or an interface name standing for all of its addresses.
* `except` removes addresses (or all the addresses of an interface) from those of this line.

## Examples

Serve only on the loopback address, so that only processes on the same host can query:

~~~ corefile
. {
    bind 127.0.0.1
    whoami
}
~~~

The same on both loopback addresses, written as two lines:

~~~ corefile
. {
    bind 127.0.0.1
    bind ::1
    whoami
}
~~~

Listen on every address of the interface `lo` except its IPv6 one:

~~~ corefile
cluster.local {
    bind lo {
        except ::1
    }
    whoami
}
~~~
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import psutil

from clusterdns.chain.handler import PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive

NAME: Final = "bind"

log = logging.getLogger(__name__)

InterfaceTable = Mapping[str, Sequence[str]]
"""Interface name -> its IPv4 and IPv6 addresses as text (as `interface_table()` returns it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindConfig:
    """The addresses of every `bind` line of a block, after interface expansion and `except`."""

    addresses: tuple[str, ...]
    """Canonical IP addresses to listen on, without duplicates, in the order first given."""


def interface_table() -> dict[str, list[str]]:
    """Read the host's interfaces and their IPv4/IPv6 addresses (link-level entries dropped).

    If the host will not list its interfaces, warn and return none: plain addresses still work.
    """
    try:
        found = psutil.net_if_addrs()
    except OSError as exc:
        log.warning("cannot list network interfaces, binding by interface name fails: %s", exc)
        return {}
    return {
        name: [a.address for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)]
        for name, addrs in found.items()
    }


def canonical_ip(text: str) -> str | None:
    """Return `text` as a canonical IP address (`0:0::1` -> `::1`), or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def interface_addresses(name: str, interfaces: InterfaceTable) -> list[str] | None:
    """Return the canonical addresses of interface `name`, or None if there is no such interface.

    IPv6 link-local addresses get the interface as their scope (`fe80::1%eth0`) when the table
    does not already give one; entries that are not IP addresses are skipped.
    """
    if name not in interfaces:
        return None
    out: list[str] = []
    for text in interfaces[name]:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if isinstance(ip, ipaddress.IPv6Address) and ip.is_link_local and ip.scope_id is None:
            ip = ipaddress.IPv6Address(f"{ip}%{name}")
        out.append(str(ip))
    return out


def expand(word: str, interfaces: InterfaceTable) -> list[str] | None:
    """Resolve one ADDRESS|IFACE argument to addresses; None if it is neither.

    An interface name wins over an address (as in CoreDNS, though no real name is both).
    """
    addresses = interface_addresses(word, interfaces)
    if addresses is not None:
        return addresses
    ip = canonical_ip(word)
    return None if ip is None else [ip]


def _expand_args(d: Directive, interfaces: InterfaceTable) -> list[str]:
    """Expand every argument of `d`; an unknown word is an error at its token."""
    out: list[str] = []
    for i, word in enumerate(d.values):
        addresses = expand(word, interfaces)
        if addresses is None:
            raise d.arg_error(i, f"not a valid IP address or interface name: {word!r}")
        out.extend(addresses)
    return out


def parse(lines: Sequence[Directive], interfaces: InterfaceTable) -> BindConfig:
    """Parse every `bind` line of a block against an interface table.

    Raises:
        CorefileError: no arguments, an unknown option, an argument that is neither an address
            nor an interface, or no address left (all excluded, or interfaces without any).
    """
    addresses: list[str] = []
    for d in lines:
        d.expect_args(1, -1)
        wanted = _expand_args(d, interfaces)
        excluded: set[str] = set()
        for opt in d.options:
            if opt.name != "except":
                raise opt.error(f"unknown property {opt.name!r}")
            opt.expect_args(1, -1)
            opt.expect_no_block()
            excluded.update(_expand_args(opt, interfaces))
        addresses.extend(a for a in wanted if a not in excluded)
    if not addresses:
        raise lines[0].error(
            "no address left to listen on (all excluded, or interfaces without any)"
        )
    return BindConfig(addresses=tuple(dict.fromkeys(addresses)))


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory | None:
    """Set the block's listen addresses from every `bind` line; no handler is added."""
    config = parse(lines, interface_table())
    ctx.block.listen = list(config.addresses)
    return None


SPEC: Final = PluginSpec(NAME, setup, replay_safe=True)
