"""# log

## Name

*log* - logs every query and the reply it got, one line each, on standard output.

## Description

With *log* in a server block every query it selects produces one INFO line after the reply is
known, in the Common Log Format by default:

~~~ txt
[INFO] 10.244.1.30:52311 - 40263 "A IN example.org. udp 29 false 512" NOERROR qr,aa,rd 56 0.000151s
~~~

that is the client's address and port, the query ID, the question, the transport, the query size,
the DO bit and the client's buffer size, then the rcode, header flags and uncompressed size of the
reply and the time the rest of the chain took. When no plugin wrote a reply and the server answers
with an error (SERVFAIL, REFUSED, FORMERR or NOTIMP), the line describes that error reply.

Each NAME becomes a rule; all rules of a line share its FORMAT and classes, and several `log` lines
may be given. For each query only the first rule (in the order written) whose NAME is the query
name or a parent of it is used: if its classes select the reply, the line is written, otherwise
nothing is; later rules are never consulted. Query logging costs time on a busy server.

## Syntax

~~~ txt
log [NAMES...] [FORMAT] {
    class CLASSES...
}
~~~

* **NAMES** are the zones whose queries are logged, compared without regard to case; default `.`.
* **FORMAT** is the line format, default `{common}`. It is only recognised when there are at
  least two arguments and the last one contains `{`: a single argument is always a NAME, so
  `log "{name}"` logs nothing, while `log . "{name}"` works.
* `class` selects the replies that are logged; several `class` lines add up. **CLASSES** are
  `success` (NOERROR with answers, with an empty answer and no SOA, and referrals), `denial`
  (NXDOMAIN without answers, and NOERROR with an empty answer and a SOA), `error` (everything
  else: SERVFAIL, REFUSED, FORMERR, NOTIMP, no reply, NXDOMAIN with answers, zone transfers,
  NOTIFY) and `all` (the default).

Placeholders in FORMAT:

* `{type}` `{class}` `{name}`: the question's type, class and name (lower case);
* `{proto}`: `udp` or `tcp`; `{remote}` and `{local}`: the client's and the server's address
  (IPv6 in brackets); `{port}`: the client's port; `{size}`: the query's size in bytes;
* `{>id}`, `{>opcode}`: the query ID and opcode (numbers); `{>do}`: `true` or `false`;
  `{>bufsize}`: the client's EDNS buffer size (512 without EDNS, 65535 over TCP);
* `{rcode}`: the reply's rcode; `{>rflags}`: its header flags, e.g. `qr,aa,rd`; `{rsize}`: its size
  uncompressed, before the server adds the client's EDNS record or truncates it; `{duration}`: in
  seconds, e.g. `0.000151s`;
* `{/LABEL}`: the request metadata LABEL (no plugin of clusterdns sets any yet, so `-`);
* `{common}`: the Common Log Format, that is
  `{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}"` followed by
  ` {rcode} {>rflags} {rsize} {duration}`; `{combined}`: the same followed by ` "{>opcode}"`.

A value that does not exist (no reply was sent) prints `-`; any other text in braces is copied
into the line as it is.

## Examples

Log every query in the Common Log Format:

~~~ corefile
. {
    log
    whoami
}
~~~

Log only the names that do not exist or have no data in cluster.local, with the query opcode:

~~~ corefile
. {
    log cluster.local {combined} {
        class denial
    }
    whoami
}
~~~

Log failures everywhere, but queries under example.org with a short format and whatever their
outcome; the example.org rule comes first so it wins for those names:

~~~ corefile
. {
    log example.org "{remote} {type} {name} {rcode} {duration}"
    log . {
        class error
    }
    whoami
}
~~~
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.dnsutil.response import ResponseClass
from clusterdns.plugins.log.config import (
    COMBINED_FORMAT,
    COMMON_FORMAT,
    NAME,
    LogConfig,
    Rule,
    parse,
)
from clusterdns.plugins.log.handler import QUERY_LOGGER, Log

__all__ = [
    "COMBINED_FORMAT",
    "COMMON_FORMAT",
    "NAME",
    "QUERY_LOGGER",
    "SPEC",
    "Log",
    "LogConfig",
    "ResponseClass",
    "Rule",
    "parse",
    "setup",
]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse every `log` line of the block into one handler."""
    config = parse(lines)

    def factory(nxt: Handler | None) -> Handler:
        return Log(config, nxt)

    return factory


# Replay-safe: the handler withholds the fast-path offer of every reply it logs (each query needs
# its own line: client, ID, duration), so only replies it would not log are ever replayed.
SPEC: Final = PluginSpec(NAME, setup, replay_safe=True)
