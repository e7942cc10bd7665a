"""# any

## Name

*any* - gives a minimal answer to ANY queries.

## Description

RFC 8482 lets a server stop answering queries of type ANY with every record it holds. With *any*
in a block, such a query gets a NOERROR reply whose answer section holds one HINFO record,
`<qname> 8482 IN HINFO "ANY obsoleted" "See RFC 8482"`, with the query name spelled as the client
spelled it. The reply is not authoritative (AA clear). Queries of any other type pass on to the
next plugin unchanged. There are no arguments; when the directive is repeated in a block only the
first line counts.

## Syntax

~~~ txt
any
~~~

## Examples

Answer ANY queries for cluster.local with the RFC 8482 HINFO record and everything else from the
cluster:

~~~ corefile
cluster.local {
    any
    kubernetes
}
~~~

Stop ANY queries before they reach upstream servers:

~~~ corefile
. {
    any
    forward . 8.8.8.8
}
~~~

`dig @127.0.0.1 example.org ANY` then shows
`example.org. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from dnslib import RR, TXT

from clusterdns.chain.handler import Handler, PluginFactory, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import Directive
from clusterdns.dnsutil import rcode as rc

NAME: Final = "any"

TTL_S: Final = 8482
"""TTL of the HINFO answer, in seconds (the RFC number, as CoreDNS uses)."""
CPU: Final = b"ANY obsoleted"
OS: Final = b"See RFC 8482"


class Any:
    """Answer ANY queries with the RFC 8482 HINFO record; pass every other query on."""

    name: ClassVar[str] = NAME

    def __init__(self, nxt: Handler | None) -> None:
        self.next = nxt

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Write the HINFO reply for ANY, else hand the query to the next plugin."""
        if req.qtype != rc.ANY:
            return await next_or_failure(NAME, self.next, req, w)
        reply = req.reply(aa=False)
        # HINFO rdata is two character-strings, the same wire form as a two-string TXT; dnslib has
        # no HINFO class, so TXT builds the rdata while the record's type stays HINFO.
        reply.add_answer(RR(req.owner, rc.HINFO, rdata=TXT([CPU, OS]), ttl=TTL_S))
        w.write(reply, NAME)
        return rc.NOERROR


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse `any` (no arguments; only the first line counts, as in CoreDNS)."""
    d = lines[0]
    d.expect_args(0)
    d.expect_no_block()
    return Any


SPEC: Final = PluginSpec(NAME, setup)
