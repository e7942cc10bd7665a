"""# whoami

## Name

*whoami* - returns your resolver's local IP address, port and transport.

## Description

Answers every query that reaches it (it never passes a query on): an authoritative NOERROR reply
with an empty answer section and, in the additional section, the client's address as an A
(IPv4 client) or AAAA record owned by the query name, plus an SRV record
`_<proto>.<qname> 0 IN SRV 0 0 <client port> .`. Both records have TTL 0. When the query name
is so long that `_<proto>.` in front of it would pass the 255-octet limit of a name, the SRV
record is left out. It is the plugin the built-in default configuration runs when no Corefile
exists. The smallest complete plugin: copy it to start a new one.

## Syntax

~~~ txt
whoami
~~~

## Examples

Start a server on port 1053 that answers every name with the client's address:

~~~ corefile
example.org:1053 {
    whoami
}
~~~

`dig @127.0.0.1 -p 1053 example.org` then shows, in the additional section,
`example.org. 0 IN A 127.0.0.1` and `_udp.example.org. 0 IN SRV 0 0 <port> .`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from dnslib import AAAA, RR, SRV, A, DNSLabel

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.request import MAX_NAME, Request
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import Directive
from clusterdns.dnsutil import rcode as rc

NAME: Final = "whoami"


class Whoami:
    """Answer with the client's address and port."""

    name: ClassVar[str] = NAME

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Write the whoami reply."""
        reply = req.reply(aa=True)
        ip, port = w.remote
        if ":" in ip:
            reply.add_ar(RR(req.owner, rc.AAAA, rdata=AAAA(ip), ttl=0))
        else:
            reply.add_ar(RR(req.owner, rc.A, rdata=A(ip), ttl=0))
        labels = (f"_{w.proto}".encode(), *req.owner.label)
        if sum(len(label) + 1 for label in labels) + 1 <= MAX_NAME:
            reply.add_ar(RR(DNSLabel(labels), rc.SRV, rdata=SRV(0, 0, port, "."), ttl=0))
        w.write(reply, NAME)
        return rc.NOERROR


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse `whoami` (no arguments; only the first line counts, as in CoreDNS)."""
    d = lines[0]
    d.expect_args(0)
    d.expect_no_block()
    plugin = Whoami()

    def factory(nxt: Handler | None) -> Handler:
        return plugin

    return factory


SPEC: Final = PluginSpec(NAME, setup)
