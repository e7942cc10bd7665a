"""# acl

## Name

*acl* - allows, blocks, filters or drops queries by source network and query type.

## Description

*acl* lets an operator keep the DNS server from answering clients it should not serve, for
example everything outside the cluster's pod and node networks. Each `acl` line is a rule for
its ZONES (the server block's zones when none are given); inside its block, policy lines are
checked in order. For a query in a rule's zones, the first policy whose query types and source
networks both match decides:

* `allow` passes the query on to the next plugin (no later rule is looked at);
* `block` replies REFUSED with an Extended DNS Error 15 (Blocked, RFC 8914);
* `filter` replies NOERROR with no records and an Extended DNS Error 17 (Filtered);
* `drop` sends nothing at all.

A query that no policy matches goes on to the next rule, and a query that no rule decides is
allowed. Block and filter replies carry their own OPT record with the DO bit set, also when the
query had none (then with a UDP size of 4096; for a query with EDNS the client's size is
mirrored), and are not authoritative.

The source is the address the packet came from, as the server sees it. If something in between
changes it (a NAT, a node-local cache or another forwarding resolver), rules see that address,
not the original client's. The plugin can be used several times per server block; the lines are
rules checked in the order written. Because the answer depends on the client's address, a block
with *acl* never replays prepared replies from the fast path.

## Syntax

~~~ txt
acl [ZONES...] {
    ACTION [type QTYPE...] [net SOURCE...]
}
~~~

* **ZONES** the zones the rule applies to; the server block's zones if omitted.
* **ACTION** `allow`, `block`, `filter` or `drop`.
* **QTYPE** a query type mnemonic in upper case (`A`, `AAAA`, `ANY`, ...), or `*` for every
  type. Without `type`, every type matches.
* **SOURCE** a network in CIDR notation or a single IPv4 or IPv6 address, or `*` for every
  address. Without `net`, every address matches.

## Examples

Answer only the cluster's own networks and refuse everyone else:

~~~ corefile
. {
    acl {
        allow net 10.0.0.0/8 192.168.0.0/16 fd00::/8
        block
    }
    whoami
}
~~~

Drop ANY queries from everywhere, and filter AAAA queries from one subnet:

~~~ corefile
cluster.local {
    acl {
        drop type ANY
        filter type AAAA net 192.168.1.0/24
    }
    whoami
}
~~~

Block one subnet only for names under a.example.org:

~~~ corefile
example.org {
    acl a.example.org {
        block net 192.168.1.0/24
    }
    whoami
}
~~~

## Metrics

If monitoring is enabled (via the *prometheus* plugin) then the following metrics are exported:

* `coredns_acl_blocked_requests_total{server, zone, view}` - queries blocked.
* `coredns_acl_filtered_requests_total{server, zone, view}` - queries filtered.
* `coredns_acl_allowed_requests_total{server, view}` - queries allowed (also those no rule
  applies to).
* `coredns_acl_dropped_requests_total{server, zone, view}` - queries dropped.

`zone` is the zone of the rule that decided; `view` is always empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.acl.config import AclConfig, Action, Policy, Rule, parse
from clusterdns.plugins.acl.handler import NAME, Acl, metrics_for

__all__ = ["NAME", "SPEC", "Acl", "AclConfig", "Action", "Policy", "Rule", "parse", "setup"]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse every `acl` line of the block into one handler's rules, in order."""
    config = parse(lines, ctx.zones)
    metrics = metrics_for(ctx.metrics)

    def factory(nxt: Handler | None) -> Handler:
        return Acl(config, metrics, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup)
"""Not replay-safe: the decision depends on the source address."""
