"""# rrl

## Name

*rrl* - limits the rate of UDP responses per client netblock (BIND-like Response Rate
Limiting), to keep the server from being used in reflection and amplification attacks.

## Description

Off unless configured: without the directive, and with the directive but no allowance, nothing
is limited. A cluster's clients are pods, and many of them share a node's netblock, so a limit
that suits the internet can starve a busy node; use it on listeners reachable from outside the
cluster, or together with `exempt-clients` for the cluster's own networks.

*rrl* is syntax-compatible with the CoreDNS external plugin of the same name (coredns/rrl) and
accounts the same way. Every UDP response to a query in ZONES is charged to an account made of:

* the client's netblock (its address cut to `ipv4-prefix-length` or `ipv6-prefix-length` bits);
* the response type: *response* (an answer with records), *nodata*, *nxdomain*, *referral*, or
  *error* (any other rcode);
* for responses, the query name and type; for NODATA, the query name; for NXDOMAIN and referrals,
  the owner of the first authority record (so all the names under one zone share an account);
  for errors, nothing more (all errors to a netblock share one account).

Each account is credited continuously at its type's allowance per second, holds at most one
second's worth, and may go up to `window` seconds into debt. While an account is in debt its
responses are dropped; with `slip-ratio N`, every N-th of them is sent instead with all sections
emptied and the TC bit set, so that a real client retries over TCP. TCP responses are never
limited. With `requests-per-second`, queries themselves are counted per netblock (over UDP and
TCP, as coredns/rrl does) and dropped over the limit before any plugin after *rrl* sees them.

Replies the server writes itself because a plugin failed without writing (SERVFAIL, REFUSED) are
not limited, as in coredns/rrl. The account table holds at most `max-table-size` accounts; when
it is full the least recently used account is recycled (as BIND does). Only the first `rrl` line
of a block counts. A block with *rrl* never replays prepared replies from the fast path.

## Syntax

~~~ txt
rrl [ZONES...] {
    window SECONDS
    ipv4-prefix-length LENGTH
    ipv6-prefix-length LENGTH
    responses-per-second ALLOWANCE
    nodata-per-second ALLOWANCE
    nxdomains-per-second ALLOWANCE
    referrals-per-second ALLOWANCE
    errors-per-second ALLOWANCE
    slip-ratio N
    requests-per-second ALLOWANCE
    max-table-size SIZE
    report-only
    exempt-clients SOURCE...
}
~~~

* **ZONES** the zones whose responses are limited; the server block's zones if omitted.
* `window` how long, in seconds, an account can stay in debt (how long a flooding netblock stays
  limited after it stops). Default 15.
* `ipv4-prefix-length`, `ipv6-prefix-length` bits of the client address that make its
  netblock: 1 to 32 (default 24) and 1 to 128 (default 56).
* `responses-per-second` responses with answers allowed per second and account. 0 (the default)
  does not limit them.
* `nodata-per-second`, `nxdomains-per-second`, `referrals-per-second`, `errors-per-second` the
  same for the other response types; each defaults to `responses-per-second`.
* `slip-ratio` 0 to 10: every N-th limited response is sent truncated instead of dropped; 0 (the
  default) drops them all, 1 sends every one truncated.
* `requests-per-second` queries allowed per second and netblock, whatever the response; 0 (the
  default) does not limit queries.
* `max-table-size` the most accounts kept; default 100000.
* `report-only` count responses and queries over the limit, but send them.
* `exempt-clients` networks (CIDR, or single addresses) never limited. Not in coredns/rrl.

## Examples

Limit every netblock to 10 answers per second for the same name and type, and let every second
limited response through truncated:

~~~ corefile
. {
    rrl {
        responses-per-second 10
        slip-ratio 2
    }
    whoami
}
~~~

Limit only clients outside the cluster's networks:

~~~ corefile
cluster.local {
    rrl {
        responses-per-second 20
        exempt-clients 10.0.0.0/8 fd00::/8
    }
    whoami
}
~~~

## Metrics

If monitoring is enabled (via the *prometheus* plugin) then the following metrics are exported:

* `coredns_rrl_responses_exceeded_total{server, zone, view}` - responses over the limit (dropped,
  slipped, or only counted with `report-only`).
* `coredns_rrl_requests_exceeded_total{server, zone, view}` - queries over `requests-per-second`.

coredns/rrl labels both by `client_ip`; clusterdns labels them by `server` and the matching
`zone` (with an empty `view`) instead, because a label per client address lets a flood of
spoofed sources grow the number of series without bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.rrl.config import RrlConfig, parse
from clusterdns.plugins.rrl.handler import NAME, LimitingWriter, Rrl, metrics_for
from clusterdns.plugins.rrl.table import Table

__all__ = ["NAME", "SPEC", "LimitingWriter", "Rrl", "RrlConfig", "Table", "parse", "setup"]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse the block's first `rrl` line; every chain built from it shares one account table."""
    config = parse(lines, ctx.zones)
    metrics = metrics_for(ctx.metrics)
    table = Table(
        window_ns=config.window_ns,
        slip_ratio=config.slip_ratio,
        max_size=config.max_table_size,
    )

    def factory(nxt: Handler | None) -> Handler:
        return Rrl(config, metrics, table, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup)
"""Not replay-safe: whether a reply is sent depends on the client and on time."""
