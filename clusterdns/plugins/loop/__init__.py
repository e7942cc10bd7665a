"""# loop

## Name

*loop* - detects simple forwarding loops at start-up; reports them, never halts the server.

## Description

After start-up the plugin sends one query, `<random>.<random>.<zone> HINFO`, to its own server
block: the two labels are 62-bit numbers from the operating system's secure random source (so
nobody can send the probe name on purpose) and `<zone>` is the block's first zone. The query goes
to the block's first `bind` address (the IPv4 or IPv6 loopback address when the block listens on
the wildcard) and the port of its first key. A failed attempt (no reply within 2 s, or an ICMP
error) is repeated a second later, for up to 30 s; as soon as one attempt gets a reply of any
rcode, or when the 30 s are over, the plugin stops watching for good. It only detects loops that
exist at start-up, and only with HINFO queries.

While it watches, it counts how often that exact question passes through it. The first time is its
own probe; a third time means the query went out through an upstream (usually `forward . /etc/
resolv.conf` on a node whose resolv.conf points back at this server, e.g. `nameserver 127.0.0.53`)
and came back. **Unlike CoreDNS, which exits the process at that point (the usual cause of a
CrashLoopBackOff), clusterdns keeps serving:**

* it logs at ERROR, naming the looping upstreams:
  `Loop (<client> -> <listen address>) detected for zone ".", see
  https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO <name>"; upstream
  127.0.0.53:53 quarantined`;
* every `forward` line of the block that sent (or would send) the probe somewhere is told to take
  that upstream out of service: queries that would go there get SERVFAIL;
* the detection shows in a metric and in the body of `/ready`, which keeps answering 200 (a loop on
  every replica must not remove cluster DNS from the Service);
* the probe itself is answered SERVFAIL, which ends the loop;
* every other query is served as before (the check costs one string comparison).

Other queries always pass through untouched. The plugin can be used once per server block.

When the block's first key has port 0 (tests, or a port picked by the system) the port is not
known when the probe starts; attempts fail and are retried until the server calls
`Loop.set_target(host, port)` with the bound address.

## Syntax

~~~ txt
loop
~~~

## Examples

Watch for a loop in a block that answers `example.org` from a hosts file and everything else with
*whoami*:

~~~ corefile
. {
    loop
    hosts {
        10.0.0.50 registry.example.org
        fallthrough
    }
    whoami
}
~~~

In a cluster, *loop* goes with *forward*: should `/etc/resolv.conf` point back at this server,
the error line names the upstream, that upstream stops being used, and cluster names keep being
answered:

~~~ txt
.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa
    loop
    forward . /etc/resolv.conf
}
~~~

## Metrics

* `clusterdns_loop_detected{zone, upstream}` - 1 for each upstream taken out of service because
  the probe came back through it (`upstream` is empty when no `forward` line could name one).
  CoreDNS has no such metric (it exits instead).

## Ready

A detected loop adds a line such as
`loop detected: upstream 127.0.0.53:53 quarantined for zone "."` to the body of the *ready*
plugin's `/ready` endpoint. It never makes `/ready` fail.

## Bugs

A loop that appears later (a node's resolv.conf changed, an upstream reconfigured after the first
30 seconds) is not detected, as in CoreDNS. Only the address and port of the first key are probed.

## See Also

The *forward* plugin, whose upstreams are quarantined, and *ready*.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import BlockSettings, PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.metrics import Gauge, Metrics
from clusterdns.plugins.loop.handler import (
    NAME,
    PROBE_WINDOW_S,
    SIGHTINGS,
    Loop,
    LoopSeries,
    Target,
    probe_host,
    probe_name,
    udp_exchange,
)

__all__ = [
    "NAME",
    "PROBE_WINDOW_S",
    "SIGHTINGS",
    "SPEC",
    "Loop",
    "LoopConfig",
    "LoopSeries",
    "parse",
    "probe_name",
    "series_for",
    "setup",
    "udp_exchange",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopConfig:
    """The `loop` line of a server block, resolved against the block."""

    zone: str = "."
    """Zone of the probe name: the block's first zone (lower case, absolute)."""
    host: str = "127.0.0.1"
    """Address the probe is sent to: the first `bind` address, loopback for the wildcard."""
    port: int = 53
    """Port the probe is sent to: the first key's; 0 until the server reports the bound port."""

    @property
    def target(self) -> Target | None:
        """(host, port) of the probe, or None while the port is unknown (0)."""
        return (self.host, self.port) if self.port else None


def parse(d: Directive, block: BlockSettings) -> LoopConfig:
    """Parse `loop` (no arguments, no block) against its block's keys and listen addresses.

    Raises:
        CorefileError: arguments or a block were given.
    """
    d.expect_args(0)
    d.expect_no_block()
    key = block.keys[0]
    return LoopConfig(zone=key.zone, host=probe_host(block.listen), port=key.port)


_SERIES: weakref.WeakKeyDictionary[Metrics, LoopSeries] = weakref.WeakKeyDictionary()


def series_for(metrics: Metrics) -> LoopSeries:
    """Return the loop series of `metrics`, registering them on first use."""
    found = _SERIES.get(metrics)
    if found is None:
        gauge = Gauge(
            "clusterdns_loop_detected",
            "Upstreams taken out of service because the loop probe came back through them.",
            ("zone", "upstream"),
        )
        metrics.register(gauge)
        found = _SERIES[metrics] = LoopSeries(gauge)
    return found


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse `loop`, add its `/ready` note and the probe task's start-up and shutdown hooks."""
    config = parse(lines[0], ctx.block)
    loop = Loop(
        zone=config.zone,
        target=config.target,
        registries=ctx.block.upstreams,
        series=series_for(ctx.metrics),
        nxt=None,
        bound=ctx.block.bound,
    )
    ctx.block.ready_notes.append(loop.ready_note)
    ctx.on_startup(loop.start)
    ctx.on_shutdown(loop.stop)

    def factory(nxt: Handler | None) -> Handler:
        loop.next = nxt
        return loop

    return factory


SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
