"""# kubernetes

## Name

*kubernetes* - answers the Kubernetes DNS-Based Service Discovery records of a cluster.

## Description

The plugin is authoritative for its zones (the cluster domain, usually `cluster.local`, and the
reverse zones). It answers from an in-memory copy of Services, EndpointSlices and Namespaces (and,
with `pods verified`, Pods) kept current by list+watch against the Kubernetes API server; it never
asks the API while answering. Records, exactly as CoreDNS 1.14 answers them:

* `<service>.<ns>.svc.<zone>`: A/AAAA of the cluster IPs (both families for dual-stack services);
  for a headless service, the ready endpoint addresses. An ExternalName service answers a CNAME,
  followed by the target's records (resolved in the plugin for in-cluster targets, through the
  server's whole chain for outside names).
* `_<port>._<proto>.<service>.<ns>.svc.<zone>` SRV for named ports (the underscores are
  optional), with the targets' addresses as glue; `<service>.<ns>.svc.<zone>` SRV lists every port.
* `<endpoint>.<service>.<ns>.svc.<zone>`: an endpoint's hostname (StatefulSets), with
  `endpoint_pod_names` its pod name, otherwise its dashed address (`10-244-3-12`).
* `<dashed-ip>.<ns>.pod.<zone>` (with `pods insecure` or `pods verified`).
* PTR for cluster IPs and endpoint addresses, IPv4 and IPv6.
* `dns-version.<zone>` TXT `"1.1.0"`; apex SOA and NS (`ns.dns.<zone>`).

A name that does not exist is NXDOMAIN, a name that exists without the asked type NODATA, both
with the zone's SOA in the authority section. Until the first list of every watch completes,
names that would be NXDOMAIN are SERVFAIL, so clients retry rather than cache a false negative;
start-up waits for that sync up to `startup_timeout`, and `ready` reports the plugin not ready
until then. When the API server goes away later, answers keep coming from the last known state.

Credentials are found as CoreDNS finds them: the in-cluster service account by default;
`endpoint` (with optional `tls`) or `kubeconfig` outside a cluster. A plain
`endpoint http://127.0.0.1:8001` (as `kubectl proxy` serves) needs no credentials. The server
needs `list` and `watch` on `services`, `endpointslices.discovery.k8s.io` and `namespaces`, plus
`pods` for `pods verified`; a missing permission is logged naming the resource and keeps the
server not ready.

`from_yaml PATH...` (not in CoreDNS) reads the objects from Kubernetes YAML files or folders
instead of the API — `kubectl get ns,svc,endpointslices,pods -A -o yaml` output, `kind: List`
documents or plain multi-document manifests — and picks up edits to them. There is no
controller emulation: the files must hold what the API would (cluster IPs, EndpointSlices). It
answers "what would DNS say for this cluster dump" offline, and serves the demo.

## Syntax

~~~ txt
kubernetes [ZONES...] {
    endpoint URL
    tls CERT KEY CACERT
    kubeconfig KUBECONFIG [CONTEXT]
    apiserver_qps QPS
    apiserver_burst BURST
    apiserver_max_inflight MAX
    namespaces NAMESPACE...
    namespace_labels EXPRESSION
    labels EXPRESSION
    pods disabled|insecure|verified
    endpoint_pod_names
    ttl TTL
    noendpoints
    fallthrough [ZONES...]
    ignore empty_service
    startup_timeout DURATION
    from_yaml PATH...
}
~~~

* **ZONES** the zones the plugin is authoritative for; default the server block's keys. The
  first zone that is not a reverse zone is the primary zone (PTR targets are built in it).
* `endpoint` the API server URL; `tls` client certificate, key and CA for it.
* `kubeconfig` credentials and address from a kubeconfig file, with an optional context.
* `apiserver_qps`, `apiserver_burst`, `apiserver_max_inflight` are accepted and validated.
* `namespaces` only these namespaces exist for DNS (others: NXDOMAIN).
* `namespace_labels` only namespaces matching this label selector exist (not with `namespaces`).
* `labels` only objects matching this label selector are visible.
* `pods` how `<dashed-ip>.<ns>.pod.<zone>` names are answered: `disabled` (default, NXDOMAIN),
  `insecure` (any address, if the namespace exists), `verified` (only addresses of live pods in
  that namespace; watches every pod).
* `endpoint_pod_names` name endpoints without a hostname after their pod.
* `ttl` TTL of every record, 0 to 3600 seconds, default 5 (`dns-version` is always 28800).
* `noendpoints` do not watch EndpointSlices (headless services and endpoint names stop resolving).
* `fallthrough [ZONES...]` pass names that would be NXDOMAIN in ZONES (default all) to the next
  plugin.
* `ignore empty_service` a ClusterIP service without a ready endpoint is NXDOMAIN.
* `startup_timeout` how long start-up waits for the first sync, default `5s`.
* `from_yaml` read the objects from these YAML files or folders instead of the API server.

## Examples

The kubeadm configuration: the cluster domain plus the reverse zones, with reverse lookups of
addresses the cluster does not know handed on to the next plugin:

~~~ corefile
.:53 {
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
}
~~~

Outside the cluster, through `kubectl proxy`, only two namespaces, and pod names for endpoints:

~~~ corefile
cluster.local:1053 {
    kubernetes {
        endpoint http://127.0.0.1:8001
        namespaces prod staging
        endpoint_pod_names
    }
}
~~~

Answer from a cluster dump, without any API server (the repository's demo cluster):

~~~ corefile
cluster.local:1053 {
    kubernetes cluster.local {
        from_yaml examples/demo-cluster.yaml
        pods insecure
    }
}
~~~

## Metrics

* `coredns_kubernetes_dns_programming_duration_seconds{service_kind}`: time from an
  EndpointSlice change (its `endpoints.kubernetes.io/last-change-trigger-time`) to the moment
  answers reflect it.
* `coredns_kubernetes_rest_client_requests_total{code, method, host}`: API requests (lists and
  watches) by HTTP status code (`<error>` when no response came back); `host` is the API
  server's `host:port`.
* `coredns_kubernetes_rest_client_request_duration_seconds{verb, host}`: duration of list
  requests, body included (watches are long-lived and not observed, as in client-go).
* `coredns_kubernetes_rest_client_rate_limiter_duration_seconds{verb, host}`: time list requests
  waited for a client-side rate limiter; there is none, so every list observes 0.
* `clusterdns_kubernetes_events_total{resource,type}`: watch events applied (`RELIST` counts
  full lists).
* `clusterdns_kubernetes_api_connected`: 1 while every watch reaches the API server, else 0.

## Ready

Not ready until every watch has completed its first list.

## See Also

The [Kubernetes DNS-Based Service Discovery](https://github.com/kubernetes/dns/blob/master/docs/specification.md)
specification, and the list of intentional differences from CoreDNS in `docs/deviations.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.errors import ServerError
from clusterdns.k8s.connect import ApiAccess, ConnectError, TlsFiles, api_client, close_client
from clusterdns.k8s.controller import Controller
from clusterdns.k8s.objects import Kind
from clusterdns.k8s.reflector import BackoffPolicy
from clusterdns.k8s.source import KubeSource, ListWatch
from clusterdns.k8s.store import Store
from clusterdns.k8s.yamlsource import YamlSource
from clusterdns.metrics import Counter, Histogram, Metrics
from clusterdns.plugins.kubernetes.config import KubernetesConfig, parse
from clusterdns.plugins.kubernetes.handler import NAME, Kubernetes, listening_addresses

log = logging.getLogger(__name__)

PROGRAMMING_BUCKETS: Final = tuple(0.001 * 2**n for n in range(20))
REST_CLIENT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""client-go's (Prometheus's default) buckets of the `rest_client` histograms."""


class RestClientMetrics:
    """client-go's `rest_client_*` series (CoreDNS's names), fed from the reflector threads.

    Implements `clusterdns.k8s.source.RequestObserver`. The families are plain-number ones, so
    every update and the scrape take one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter(
            "coredns_kubernetes_rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ("code", "method", "host"),
        )
        self.duration = Histogram(
            "coredns_kubernetes_rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb and host.",
            ("verb", "host"),
            REST_CLIENT_BUCKETS,
        )
        self.rate_limiter_duration = Histogram(
            "coredns_kubernetes_rest_client_rate_limiter_duration_seconds",
            "Client side rate limiter latency in seconds. Broken down by verb and host.",
            ("verb", "host"),
            REST_CLIENT_BUCKETS,
        )

    def result(self, code: str, method: str, host: str) -> None:
        """Count one request by status code."""
        with self._lock:
            self.requests.inc((code, method, host))

    def latency(self, verb: str, host: str, seconds: float) -> None:
        """Observe one list request's duration."""
        with self._lock:
            self.duration.observe((verb, host), seconds)

    def rate_limiter(self, verb: str, host: str, seconds: float) -> None:
        """Observe one list request's wait for the (absent) rate limiter."""
        with self._lock:
            self.rate_limiter_duration.observe((verb, host), seconds)

    def collect(self) -> list[Metric]:
        """The three families, consistent with each other."""
        with self._lock:
            return [
                self.requests.collect(),
                self.duration.collect(),
                self.rate_limiter_duration.collect(),
            ]


class _WatchMetrics(Collector):
    """The plugin's series, shared by every block and reload of the process."""

    def __init__(self, metrics: Metrics) -> None:
        self.programming = Histogram(
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.",
            ("service_kind",),
            PROGRAMMING_BUCKETS,
        )
        self.rest_client = RestClientMetrics()
        self.watches: list[Watch] = []
        metrics.register(self.programming)
        metrics.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield from self.rest_client.collect()
        events = CounterMetricFamily(
            "clusterdns_kubernetes_events",
            "Kubernetes watch events applied to the DNS cache, by resource and type.",
            labels=("resource", "type"),
        )
        totals: dict[tuple[str, str], int] = {}
        connected = 1
        for watch in self.watches:
            for key, n in watch.store.events.counts.items():
                totals[key] = totals.get(key, 0) + n
            if watch.controller is not None and not watch.controller.status().connected:
                connected = 0
        for key, n in sorted(totals.items()):
            events.add_metric(list(key), n)
        yield events
        gauge = GaugeMetricFamily(
            "clusterdns_kubernetes_api_connected",
            "1 while every Kubernetes watch reaches its source, else 0.",
        )
        gauge.add_metric([], connected)
        yield gauge


def kinds_for(config: KubernetesConfig) -> list[Kind]:
    """The resources a configuration watches (spec §6.2)."""
    kinds = [Kind.NAMESPACE, Kind.SERVICE]
    if not config.noendpoints:
        kinds.append(Kind.ENDPOINTSLICE)
    if config.watches_pods:
        kinds.append(Kind.POD)
    return kinds


class Watch:
    """The list+watch machinery of one `kubernetes` line: started and stopped by the lifecycle."""

    def __init__(
        self,
        config: KubernetesConfig,
        store: Store,
        kinds: list[Kind],
        rest_client: RestClientMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.kinds = kinds
        self.rest_client = rest_client
        """Where API requests are counted and timed (the `rest_client` metrics)."""
        self.controller: Controller | None = None
        self._api: object | None = None

    def source(self) -> ListWatch:
        """The configured source: YAML files, or the API server.

        Raises:
            ServerError: the API credentials cannot be loaded.
        """
        c = self.config
        if c.from_yaml:
            return YamlSource(c.from_yaml)
        access = ApiAccess(
            endpoint=c.endpoint,
            tls=TlsFiles(c.tls.cert, c.tls.key, c.tls.ca) if c.tls else None,
            kubeconfig=c.kubeconfig,
            context=c.kubeconfig_context,
        )
        try:
            api = api_client(access)
        except ConnectError as exc:
            raise ServerError(f"plugin/{NAME}: {exc}") from exc
        self._api = api
        return KubeSource(api, observer=self.rest_client)

    async def start(self) -> None:
        """Start the watches and wait for the first sync, up to `startup_timeout`."""
        c = self.config
        self.controller = Controller(
            self.source(),
            self.store,
            asyncio.get_running_loop(),
            self.kinds,
            label_selector=c.labels.text if c.labels else None,
            namespace_label_selector=c.namespace_labels.text if c.namespace_labels else None,
            # A fixed YAML typo should be picked up within seconds, not after a 30 s backoff.
            backoff=BackoffPolicy(max_s=2.0) if c.from_yaml else None,
        )
        self.controller.start()
        await self.controller.wait_synced(c.startup_timeout_s)

    async def stop(self) -> None:
        """Stop the watches; the store keeps the last state."""
        if self.controller is None:
            return
        self.controller.stop()
        await asyncio.to_thread(self.controller.join, 5.0)
        if self._api is not None:
            close_client(self._api)  # type: ignore[arg-type]
            self._api = None
        self.controller = None


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse the `kubernetes` line, prepare the store and register the watch hooks."""
    config = parse(lines, ctx.zones)
    kinds = kinds_for(config)
    metrics = ctx.metrics.shared(NAME, _WatchMetrics)

    def make() -> Watch:
        store = Store()
        store.expect(kinds)
        store.on_programmed = lambda kind, seconds: metrics.programming.observe((kind,), seconds)
        watch = Watch(config, store, kinds, metrics.rest_client)
        metrics.watches.append(watch)
        return watch

    # A reload keeps the watch cache (no relist, no start-up wait) when this directive, all its
    # tokens, and the block's zones are unchanged; line numbers do not matter.
    watch = ctx.process.reuse(ctx.fingerprint(lines), make, start=Watch.start, stop=Watch.stop)
    store = watch.store
    ctx.add_ready_check(NAME, lambda: store.synced)
    block = ctx.block
    generations = ctx.process.generations
    handlers: list[Kubernetes] = []

    def factory(nxt: Handler | None) -> Handler:
        handler = Kubernetes(config, store, nxt, block, listening_addresses(block), generations)
        # The store may be shared with the running configuration (a reload took it over): the
        # handler listens to it only while its own configuration runs, so a configuration that
        # fails, or is replaced, leaves nothing behind in the store.
        store.listeners.remove(handler.on_store_change)
        handlers.append(handler)
        return handler

    async def attach() -> None:
        store.listeners.extend(h.on_store_change for h in handlers)

    async def detach() -> None:
        for handler in handlers:
            with contextlib.suppress(ValueError):
                store.listeners.remove(handler.on_store_change)

    ctx.on_startup(attach)
    ctx.on_shutdown(detach)
    return factory


SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
