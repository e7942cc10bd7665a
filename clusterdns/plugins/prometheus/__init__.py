"""# prometheus

## Name

*prometheus* - enables Prometheus metrics.

## Description

Serves every metric of the process at `/metrics` on ADDRESS, in the Prometheus text exposition
format (`text/plain; version=0.0.4`). Blocks that use the same address share one endpoint; the
metrics are process-wide either way, so every endpoint shows the same series.

Every query that enters a server block with `prometheus` is counted, labelled with the server
(`dns://:53`, or `dns://127.0.0.1:53` with *bind*), the server-block zone that matched (not the
zone of the plugin that answered) and an empty view. Queries the server refuses before any chain
runs are counted by the server itself under zone `dropped`, whether or not a block has
`prometheus`.

## Syntax

~~~ txt
prometheus [ADDRESS] {
    runtime_metrics
}
~~~

* **ADDRESS** is `host:port` to listen on; default `localhost:9153`. Kubernetes deployments use
  `:9153` so that Prometheus can scrape the pod.
* `runtime_metrics` is accepted for compatibility and ignored: the process metrics
  (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...) are always exported.

`tls` (HTTPS for `/metrics`) is not supported and is rejected.

## Examples

Export metrics on port 9153 of every interface, as kubeadm does:

~~~ corefile
.:53 {
    prometheus :9153
    whoami
}
~~~

Two blocks sharing the default endpoint on `localhost:9153`:

~~~ corefile
example.org:1053 {
    prometheus
    whoami
}
cluster.local:1053 {
    prometheus {
        runtime_metrics
    }
    whoami
}
~~~

## Metrics

Counted by this plugin, labelled `server`, `zone` and `view`:

* `coredns_dns_requests_total{proto, family, type}` - queries; `family` is 1 (IPv4) or 2 (IPv6),
  `type` a common query type or `other`.
* `coredns_dns_do_requests_total{}` - queries with the DO bit set.
* `coredns_dns_request_size_bytes{proto}` - histogram of query sizes.
* `coredns_dns_request_duration_seconds{}` - histogram of the time from entering the chain at
  this plugin to the reply.
* `coredns_dns_response_size_bytes{proto}` - histogram of reply sizes (0 when no plugin wrote
  one and the server answered with the error rcode).
* `coredns_dns_responses_total{rcode, plugin}` - replies by rcode name and by the plugin that
  built the reply (empty when the server wrote it).

The server exports `coredns_build_info`, `coredns_panics_total` and `coredns_plugin_enabled`, and
every other plugin its own series.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from clusterdns.chain.handler import Handler, PluginFactory, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.setup import PluginSpec, SetupContext, address_arg
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import Directive
from clusterdns.dnsutil.rcode import metric_type, rcode_name
from clusterdns.errors import PluginError
from clusterdns.metrics import CONTENT_TYPE, Metrics
from clusterdns.plugins.prometheus.replay import OfferHolder, Recorders
from clusterdns.webserver import Response

NAME: Final = "prometheus"
DEFAULT_ADDRESS: Final = "localhost:9153"
PATH: Final = "/metrics"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    """The parsed `prometheus` directive."""

    address: str = DEFAULT_ADDRESS
    """`host:port` to serve `/metrics` on (default `localhost:9153`)."""
    runtime_metrics: bool = False
    """`runtime_metrics` was given; accepted and ignored (process metrics are always exported)."""


def parse(d: Directive) -> PrometheusConfig:
    """Parse one `prometheus` line and its block.

    Raises:
        CorefileError: a bad address or option, with file and line.
    """
    address = address_arg(d, DEFAULT_ADDRESS)
    runtime_metrics = False
    for opt in d.options:
        if opt.name == "runtime_metrics":
            opt.expect_args(0)
            opt.expect_no_block()
            runtime_metrics = True
        elif opt.name == "tls":
            raise opt.error("tls is not supported by clusterdns")
        else:
            raise opt.error(f"unknown option {opt.name!r}")
    return PrometheusConfig(address=address, runtime_metrics=runtime_metrics)


class Exporter:
    """The `/metrics` endpoint of one address."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, method: str) -> Response:
        """Answer a scrape (any method) with the text exposition of every series."""
        return 200, CONTENT_TYPE, self.metrics.exposition()


class Prometheus:
    """Count every query that enters the block, and its reply. Loop-thread only."""

    name: ClassVar[str] = NAME

    def __init__(self, metrics: Metrics, nxt: Handler | None) -> None:
        self.metrics = metrics
        self.next = nxt
        self.recorders = Recorders(metrics)

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Count the query, pass it on, then count the reply (also when a plugin raised).

        A fast-path offer of the reply is held until the reply is counted, then passed on with
        the hook that counts each replay the same way (replay.py).
        """
        start = time.perf_counter()
        m = self.metrics
        server, zone, proto = req.server, req.zone, req.proto
        base = (server, zone, "")
        do = req.do
        size = len(req.wire)
        m.requests.inc((*base, proto, "2" if ":" in req.remote[0] else "1", metric_type(req.qtype)))
        if do:
            m.do_requests.inc(base)
        sized = (*base, proto)
        m.request_size.observe(sized, size)
        holder = OfferHolder(w)
        try:
            code = await next_or_failure(NAME, self.next, req, holder)
        except PluginError as exc:
            self._reply(w, exc.rcode, base, sized, start)
            raise
        self._reply(w, code, base, sized, start)
        offer = holder.held
        if offer is not None and w.written:
            key = (server, zone, proto, req.qtype, do, size, w.rsize, w.rcode, w.plugin)
            w.offer_fastpath(offer.with_hit(self.recorders.get(key)))
        return code

    def _reply(
        self,
        w: ResponseWriter,
        code: int,
        base: tuple[str, str, str],
        sized: tuple[str, str, str, str],
        start: float,
    ) -> None:
        m = self.metrics
        m.duration.observe(base, time.perf_counter() - start)
        if w.written:
            m.response_size.observe(sized, w.rsize)
            m.responses.inc((*base, rcode_name(w.rcode), w.plugin))
        else:
            m.response_size.observe(sized, 0)
            m.responses.inc((*base, rcode_name(code), ""))


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse `prometheus`, route `/metrics` on its address and return the counting handler."""
    config = parse(lines[0])
    listener = ctx.process.http.listeners.get(config.address)
    if listener is None or not isinstance(listener.routes.get(PATH), Exporter):
        ctx.process.http.route(config.address, PATH, Exporter(ctx.metrics))
    metrics = ctx.metrics

    def factory(nxt: Handler | None) -> Handler:
        return Prometheus(metrics, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
