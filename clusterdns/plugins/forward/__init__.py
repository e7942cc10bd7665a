"""# forward

## Name

*forward* - sends queries to upstream resolvers and relays their replies.

## Description

Each `forward` line handles the queries for names at or below FROM, except those under an
`except` zone (a query for exactly FROM is always forwarded); every other query goes to the next
plugin. Several `forward` lines in one server block are tried in the order written, so put the
more specific FROM zones first.

A query is sent unchanged except for a fresh random query ID, over the transport the client used
(UDP or TCP) unless `force_tcp` or `prefer_udp` say otherwise; `tls://` upstreams always use DNS
over TLS. The reply is relayed with the client's ID and question, keeping its rcode, flags (TC
included) and all sections; the server then adapts the OPT record to the client and truncates the
reply to the client's buffer. Idle TCP and TLS connections are reused until `expire`.

The upstreams are tried in the order given by `policy`. When one does not answer within
`read_timeout` (or the connection fails) the next is tried, up to `max_connect_attempts` attempts
and 5 seconds in all; if every attempt fails the client gets SERVFAIL and the error (for example
`read udp 10.0.0.1:41234->10.0.0.2:53: i/o timeout`) is returned for the *errors* plugin to log.

After a failure an upstream is health checked every `health_check` interval with a `. IN NS`
query over its own transport; any reply, whatever its rcode, makes it healthy again. Once more
than `max_fails` checks in a row have failed it is down and skipped. When every upstream is down
a random one is tried anyway, or, with `failfast_all_unhealthy_upstreams`, the query fails at
once with SERVFAIL.

Unlike CoreDNS, replies are checked as RFC 5452 asks: every upstream query has its own random ID
and, over UDP, its own socket on a random source port; a reply whose ID, source address and port,
or question (name in any letter case, type, class) does not match is ignored and the wait goes on
until `read_timeout` (CoreDNS answers FORMERR when the question does not match). Identical queries
(same name in any case, type, class, header bits, EDNS options and transport) that arrive while
one is already waiting for an upstream share its reply instead of being sent again (except HINFO
queries, so that the *loop* plugin's probe can come back through the line). The number of
upstream queries pending in the whole process is capped (half the open-file limit, at most
10,000); beyond it queries are REFUSED and counted.

Upstreams taken out of service by the *loop* plugin are never used again; queries that only they
could answer get SERVFAIL.

## Syntax

~~~ txt
forward FROM TO... {
    except IGNORED_NAMES...
    force_tcp
    prefer_udp
    expire DURATION
    max_age DURATION
    max_idle_conns INTEGER
    read_timeout DURATION
    max_fails INTEGER
    max_connect_attempts INTEGER
    tls [CERT KEY] [CA]
    tls_servername NAME
    policy random|round_robin|sequential
    health_check DURATION [no_rec] [domain FQDN]
    max_concurrent MAX
    next RCODE...
    next_on_nodata
    failfast_all_unhealthy_upstreams
    failover RCODE...
    source_address IP
}
~~~

* **FROM** the zone to forward; `.` for every name. A CIDR that expands to several reverse zones
  uses only the first.
* **TO...** 1 to 15 upstreams: `IP`, `IP:PORT`, `[IPv6]:PORT`, `dns://IP[:PORT]` (plain DNS, port
  53 by default), `tls://IP[%NAME][:PORT]` (DNS over TLS, port 853 by default, NAME is the TLS
  server name), or a file in resolv.conf format, whose `nameserver` lines become upstreams on
  port 53 (an IPv6 zone such as `%eth0` is dropped). The file is read at start-up and on reload;
  a file without nameservers is skipped. Duplicates are removed. DNS over HTTPS (`https://`) and
  hostnames are not supported.
* `except` **IGNORED_NAMES...** zones not forwarded by this line.
* `force_tcp` always use TCP upstream (wins over `prefer_udp`).
* `prefer_udp` use UDP upstream even when the client used TCP; a truncated reply is retried over
  TCP with the same upstream.
* `expire` close idle upstream connections after **DURATION**; default 10s.
* `max_age` close upstream connections older than **DURATION**, however busy; default 0 (never);
  must not be below `expire`.
* `max_idle_conns` idle connections kept per upstream and protocol; default 0 (no explicit cap;
  128 are kept at most).
* `read_timeout` how long to wait for one upstream's reply; default 2s; must be positive.
* `max_fails` an upstream is down after more than **INTEGER** failed health checks in a row;
  default 2; 0 never marks an upstream down and turns health checks off.
* `max_connect_attempts` upstream attempts per query; default twice the number of upstreams;
  0 removes the cap (the 5 s budget still holds).
* `tls` TLS settings for `tls://` upstreams: no argument uses the system CAs; **CA** verifies the
  server with that CA file; **CERT KEY** adds a client certificate; **CERT KEY CA** both. TLS 1.2
  is the minimum.
* `tls_servername` the name to verify in every `tls://` upstream's certificate (otherwise the
  per-upstream NAME, else the IP address); not allowed together with `tls://IP%NAME`.
* `policy` the order upstreams are tried in: `random` (default, a new order per query),
  `round_robin` (a rotating start) or `sequential` (as written).
* `health_check` the interval between checks of a failing upstream, default 0.5s; `no_rec` clears
  RD in the check query; `domain` checks **FQDN** instead of `.`.
* `max_concurrent` with more than **MAX** queries of this line waiting for upstreams, answer new
  ones REFUSED at once (error `concurrent queries exceeded maximum MAX`); default 0 (no limit).
* `next` when an upstream answers with one of these rcodes (NXDOMAIN, SERVFAIL, REFUSED...) and
  the next plugin is another `forward` line, hand the query to it.
* `next_on_nodata` the same for NOERROR replies with an empty answer section.
* `failfast_all_unhealthy_upstreams` answer SERVFAIL when every upstream is down.
* `failover` when an upstream answers with one of these rcodes (not NOERROR), try the next
  upstream; once every upstream has been tried the last reply is relayed.
* `source_address` the local address for upstream queries and health checks.

`doh_method GET|POST` is accepted and ignored (there are no DNS over HTTPS upstreams); `resolver`
is rejected, as hostnames are not supported as upstreams.

## Examples

Send everything to the name servers of the machine's resolv.conf, as kubeadm does, refusing new
queries while 1000 are waiting:

~~~ corefile
.:53 {
    forward . /etc/resolv.conf {
        max_concurrent 1000
    }
}
~~~

Send `example.org` to a resolver on another port, trying the two upstreams in the order written:

~~~ corefile
example.org {
    forward . 127.0.0.1:9005 [::1]:9005 {
        policy sequential
        health_check 1s
    }
}
~~~

Send `lab.example.local` to one resolver, the rest of `example.local` to another, except
`internal.example.local`, and everything else upstream over DNS over TLS; a second line takes the
queries the first answered NXDOMAIN:

~~~ corefile
. {
    forward lab.example.local 127.0.0.20
    forward example.local 127.0.0.10 {
        except internal.example.local
    }
    forward . tls://127.0.0.53%dns.example.org {
        next NXDOMAIN
    }
    forward . 127.0.0.54:5353 {
        force_tcp
        max_fails 0
    }
}
~~~

## Metrics

If the *prometheus* plugin is enabled:

* `coredns_forward_healthcheck_broken_total{}` - times every upstream was down (a random one is
  then tried, or SERVFAIL with `failfast_all_unhealthy_upstreams`).
* `coredns_forward_max_concurrent_rejects_total{}` - queries refused by `max_concurrent`.
* `coredns_proxy_request_duration_seconds{proxy_name="forward", to, rcode}` - upstream round
  trips that returned a reply, by upstream (`host:port`) and rcode.
* `coredns_proxy_healthcheck_failures_total{proxy_name="forward", to}` - failed health checks.
* `coredns_proxy_conn_cache_hits_total{proxy_name="forward", to, proto}` and
  `coredns_proxy_conn_cache_misses_total{proxy_name="forward", to, proto}` - reused and new
  upstream connections; `proto` is `udp`, `tcp` or `tcp-tls`. Every UDP query uses a new socket,
  so UDP only counts misses.
* `clusterdns_forward_discarded_replies_total{to, reason}` - upstream replies ignored, `reason`
  one of `id`, `question`, `source`, `not_response`, `malformed`; a burst is a sign of spoofing.
* `clusterdns_forward_merged_requests_total{}` - queries answered by an identical query already
  in flight.
* `clusterdns_forward_pending_rejects_total{}` - queries refused because too many upstream queries
  were pending in the process.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.forward.config import NAME, ForwardConfig, Transport, parse
from clusterdns.plugins.forward.handler import Forward
from clusterdns.plugins.forward.metrics import ForwardMetrics, Shared, shared_for
from clusterdns.plugins.forward.proxy import Proxy, ProxySettings
from clusterdns.plugins.forward.transport import UpstreamQuery, tls_context

__all__ = [
    "NAME",
    "SPEC",
    "Forward",
    "ForwardConfig",
    "ForwardMetrics",
    "Proxy",
    "build",
    "parse",
    "setup",
    "shared_for",
]


def build(d: Directive, config: ForwardConfig, shared: Shared) -> Forward:
    """Create the handler and upstreams of one parsed line (nothing is opened).

    Raises:
        CorefileError: the TLS settings do not load.
    """
    ssl_context: ssl.SSLContext | None = None
    if any(u.transport is Transport.TLS for u in config.upstreams):
        try:
            ssl_context = tls_context(config.tls)
        except (ssl.SSLError, OSError) as exc:
            raise d.error(f"could not load TLS settings: {exc}") from exc
    settings = ProxySettings(
        read_timeout_s=config.read_timeout_s,
        expire_s=config.expire_s,
        max_age_s=config.max_age_s,
        max_idle_conns=config.max_idle_conns,
        max_fails=config.max_fails,
        health_check_s=config.health_check_s,
        probe=UpstreamQuery.probe(config.health_check_domain, rd=config.health_check_rd),
        force_tcp=config.force_tcp,
        source_address=config.source_address,
        tls_servername=config.tls_servername,
    )
    proxies = [Proxy(addr, settings, shared.metrics, ssl_context) for addr in config.upstreams]
    return Forward(config, proxies, shared)


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse every `forward` line of the block; chain them in the order written."""
    shared = shared_for(ctx.metrics)
    forwards = [build(d, parse(d), shared) for d in lines]
    for fwd in forwards:
        ctx.block.upstreams.append(fwd)
        ctx.on_startup(fwd.start)
        ctx.on_shutdown(fwd.stop)

    def factory(nxt: Handler | None) -> Handler:
        for fwd, following in zip(forwards, [*forwards[1:], nxt], strict=True):
            fwd.next = following
        return forwards[0]

    return factory


SPEC: Final = PluginSpec(NAME, setup, replay_safe=True)
