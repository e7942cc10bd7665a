"""# bufsize

## Name

*bufsize* - limits the EDNS0 UDP buffer size that clients advertise.

## Description

A client that advertises a large EDNS0 buffer invites large UDP replies, and replies larger than
the path MTU arrive as IP fragments, which are often lost or spoofed. *bufsize* lowers the
advertised size of every query that carries an OPT record and asks for more than SIZE bytes to
SIZE, before the rest of the chain sees the query. Replies are then truncated at SIZE (TC set)
and carry SIZE in their OPT record, and queries forwarded upstream advertise SIZE. A smaller
advertised size is never raised, and queries without an OPT record are left alone (their limit
stays 512 bytes).

SIZE is a number of bytes from 512 to 4096; the default, 1232, is the value recommended by DNS
Flag Day 2020 (it fits an IPv6 packet on a 1280-byte MTU without fragmenting). When the directive
is repeated in a block only the first line counts.

## Syntax

~~~ txt
bufsize [SIZE]
~~~

* **SIZE** the largest UDP reply, in bytes, 512 to 4096. Default 1232.

## Examples

Cap every client at the default 1232 bytes:

~~~ corefile
. {
    bufsize
    whoami
}
~~~

Cap clients of cluster.local at 1024 bytes:

~~~ corefile
cluster.local {
    bufsize 1024
    whoami
}
~~~
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from clusterdns.chain.handler import Handler, PluginFactory, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import Directive

NAME: Final = "bufsize"

MIN_SIZE: Final = 512
MAX_SIZE: Final = 4096
DEFAULT_SIZE: Final = 1232


@dataclass(frozen=True, slots=True, kw_only=True)
class BufsizeConfig:
    """The parsed `bufsize` line."""

    size: int = DEFAULT_SIZE
    """Largest EDNS0 UDP size passed down the chain, in bytes (512..4096, default 1232)."""


def parse(d: Directive) -> BufsizeConfig:
    """Parse one `bufsize [SIZE]` line.

    Raises:
        CorefileError: more than one argument, a block, or a SIZE that is not an integer in
            512..4096.
    """
    args = d.expect_args(0, 1)
    d.expect_no_block()
    if not args:
        return BufsizeConfig()
    text = args[0]
    size = int(text) if text.isdecimal() and text.isascii() else -1
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise d.arg_error(0, f"SIZE must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {text!r}")
    return BufsizeConfig(size=size)


class Bufsize:
    """Lower the query's advertised EDNS0 size to the configured maximum, then pass it on."""

    name: ClassVar[str] = NAME

    def __init__(self, config: BufsizeConfig, nxt: Handler | None) -> None:
        self.size = config.size
        self.next = nxt

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Cap `req.edns` (never raising it) and call the next plugin."""
        edns = req.edns
        if edns is not None and edns.udp_size > self.size:
            req.edns = edns.with_size(self.size)
        return await next_or_failure(NAME, self.next, req, w)


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse `bufsize` (only the first line counts, as in CoreDNS) and return the factory."""
    config = parse(lines[0])

    def factory(nxt: Handler | None) -> Handler:
        return Bufsize(config, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup)
