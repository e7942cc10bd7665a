"""# cache

## Name

*cache* - enables a frontend cache.

## Description

With *cache* enabled, replies from the plugins after it (kubernetes, forward, hosts, template,
...) are kept in memory and later queries for the same name, type and class are answered from
there, for up to 3600 s (positive answers) or 1800 s (denials of existence). The key is the
lower-cased query name, type and class plus the query's DO and CD bits, so queries that differ
only in letter case share an entry, and the cached answer keeps the letter case of the reply that
filled it.

A reply from the cache has the question and ID of the current query, RD and CD copied from it,
AA always set (some old glibc stub resolvers drop non-authoritative replies), RA as stored, AD as
stored but only when the query had DO or AD set, and every record's TTL set to the seconds the
entry has left. Negative entries are looked up before positive ones.

On a miss the reply of the next plugin is classified:

* NOERROR answers, referrals and empty NOERROR replies go to the *success* cache.
* NXDOMAIN and NODATA (NOERROR without answer, or with a CNAME chain that does not reach the
  queried type) go to the *denial* cache, but only with a SOA in the authority section.
* SERVFAIL and NOTIMP go to the *denial* cache for the `servfail` duration (default 5 s).
* Everything else (REFUSED, FORMERR, truncated replies, zone transfers, NOTIFY, UPDATE) is not
  cached, and neither is a reply whose question differs from the query's.

An entry lives for the smallest TTL in the reply (OPT records excluded), capped at the class's
maximum and raised to its minimum (5 s by default); referrals and replies without records live
5 s. The reply sent on a miss has every TTL rewritten to that duration too, also when it is not
stored (for instance in a zone under `disable`), so an upstream TTL of 3600 reaches the client
as 30 with `cache 30`, and a TTL of 0 as 5. Only replies that a plugin wrote are cached: a query
that fails without a reply (a forward timeout answered SERVFAIL by the server) leaves nothing.

DNSSEC (DO) queries are passed through: the cache asks the rest of the chain with the AD bit
set and keeps DNSSEC records with the reply. A reply with the DO bit and an expired RRSIG is
not cached.

This plugin can only be used once per Server Block.

## Syntax

~~~ txt
cache [TTL] [ZONES...]
~~~

* **TTL** the longest time, in seconds, anything is cached, for positive and negative replies
  alike (must be > 0). Without it: 3600 for positive replies, 1800 for denials.
* **ZONES** the zones to cache; default: the server block's zones.

More control:

~~~ txt
cache [TTL] [ZONES...] {
    success CAPACITY [TTL] [MINTTL]
    denial CAPACITY [TTL] [MINTTL]
    prefetch AMOUNT [[DURATION] [PERCENTAGE%]]
    serve_stale [DURATION] [immediate [RESPONSE_TTL [FAILURE_RECHECK]]
                           | verify [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]
    serve_stale_policy prefer_positive
    servfail DURATION
    disable success|denial [ZONES...]
    keepttl
}
~~~

* `success` settings of the positive cache: **CAPACITY** entries (default 9984; rounded down to
  a multiple of 256, at least 1024), maximum **TTL** (> 0) and minimum **MINTTL** (>= 0, default
  5) in seconds. A duration of 0 (only possible with MINTTL 0) means the reply is not stored.
* `denial` the same for the denial cache (NXDOMAIN, NODATA, SERVFAIL).
* `prefetch` refresh popular entries in the background before they expire: an entry that got
  **AMOUNT** hits without a gap of **DURATION** (default `1m`) between two of them is refreshed
  when its remaining TTL drops to **PERCENTAGE** (default `10%`, range 10% to 90%, the `%` is
  required) of its original TTL. One refresh per entry at a time.
* `serve_stale` keep answering with expired entries for **DURATION** (default `1h`) after they
  expired. `immediate` (default) answers with the stale entry and refreshes it in the
  background; `verify` first tries to refresh it and answers stale only if that fails, waiting
  at most **VERIFY_TIMEOUT** (default `0`: as long as the refresh takes; after a timeout the
  refresh goes on in the background). **RESPONSE_TTL** (default `0`, whole seconds; RFC 8767
  recommends `30s`) is the TTL of stale answers. **FAILURE_RECHECK** (default `0`, at most `5m`)
  is how long after a failed refresh of an entry no further refresh is tried; meanwhile the
  stale entry is served at once.
* `serve_stale_policy prefer_positive` with `serve_stale`: an answering positive entry (fresh or
  within the stale window) wins over a cached NXDOMAIN, NODATA or SERVFAIL, and survives being
  overwritten by a reply that does not answer the question.
* `servfail` how long SERVFAIL and NOTIMP replies are cached: default `5s`, `0` disables, at
  most `5m` (RFC 2308).
* `disable` do not store `success` or `denial` replies for names in **ZONES** (every zone when
  none is given). Replies still get their TTLs rewritten.
* `keepttl` answer with the TTL an entry was stored with instead of the remaining one (entries
  still expire as usual).

When a cache is full, expired entries are dropped first, then the least recently used one.

## Examples

Cache everything for at most 10 seconds:

~~~ corefile
. {
    cache 10
    whoami
}
~~~

The kubeadm form that keeps the cluster domain out of the cache: replies for `cluster.local`
are not stored (their TTLs are still rewritten, so a TTL of 0 leaves as 5), everything else is
cached for at most 30 seconds:

~~~ corefile
.:53 {
    cache 30 {
        disable success cluster.local
        disable denial cluster.local
    }
    hosts {
        10.96.0.1 kubernetes.default.svc.cluster.local
        fallthrough
    }
    template IN A example.org {
        answer "{{ .Name }} 3600 IN A 192.0.2.10"
    }
}
~~~

`dig www.example.org` shows `www.example.org. 30 IN A 192.0.2.10`; asked again 7 seconds later,
the TTL is 23 and the flags are `qr aa rd` (from the cache).

Only cache `example.org`, with a larger positive and a smaller denial cache; serve entries up to
an hour past their expiry, with a TTL of 30, while the backend fails; and refresh an entry in the
background when a fifth of its TTL is left if it was asked for at least 5 times with less than a
minute between two queries:

~~~ corefile
. {
    cache example.org {
        success 20000
        denial 2500
        serve_stale 1h immediate 30s
        prefetch 5 1m 20%
    }
    template IN A example.org {
        answer "{{ .Name }} 300 IN A 192.0.2.10"
    }
}
~~~

Do not cache denials for `sub.example.org`, and cache SERVFAIL for at most 2 seconds:

~~~ corefile
example.org {
    cache {
        disable denial sub.example.org
        servfail 2s
    }
    template ANY ANY {
        rcode NXDOMAIN
        authority "example.org. 60 IN SOA ns.example.org. hostmaster.example.org. (1 60 60 60 60)"
    }
}
~~~

## Metrics

If monitoring is enabled (via the *prometheus* plugin) then the following metrics are exported:

* `coredns_cache_entries{server, type, zones, view}` entries in the cache by cache type.
* `coredns_cache_requests_total{server, zones, view}` lookups in the cache.
* `coredns_cache_hits_total{server, type, zones, view}` hits by cache type.
* `coredns_cache_misses_total{server, zones, view}` misses (deprecated: derive misses from
  requests and hits).
* `coredns_cache_prefetch_total{server, zones, view}` background refreshes started (prefetch
  and stale refreshes).
* `coredns_cache_drops_total{server, zones, view}` replies not cached because their question
  did not match the query's.
* `coredns_cache_served_stale_total{server, zones, view}` answers from expired entries.
* `coredns_cache_evictions_total{server, type, zones, view}` entries evicted because the cache
  was full.

`type` is `success` or `denial`, `zones` the cache's zones joined with `,`, `view` is empty.
`coredns_cache_entries` is updated whenever a reply is stored.

## Bugs

Eviction drops the least recently used entry rather than a random one, and expired entries
past the stale window are purged when a reply is stored (CoreDNS keeps them until evicted).
A reply that passes through the cache without being stored may be replayed by the fast path,
and those replays are not counted in `coredns_cache_requests_total` or
`coredns_cache_misses_total`.

## See Also

RFC 2308 (negative caching) and RFC 8767 (serving stale data).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.cache.config import NAME, CacheConfig, parse
from clusterdns.plugins.cache.handler import Cache
from clusterdns.plugins.cache.metrics import CacheMetrics, metrics_for

__all__ = ["NAME", "SPEC", "Cache", "CacheConfig", "CacheMetrics", "metrics_for", "parse", "setup"]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse the `cache` line; the factory builds the handler, shutdown cancels its tasks."""
    config = parse(lines[0], ctx.zones)
    series = metrics_for(ctx.metrics)
    built: list[Cache] = []

    def factory(nxt: Handler | None) -> Handler:
        cache = Cache(
            config, nxt, metrics=series, clock=time.monotonic, generations=ctx.process.generations
        )
        built.append(cache)
        return cache

    async def stop() -> None:
        for cache in built:
            await cache.close()

    ctx.on_shutdown(stop)
    return factory


SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
