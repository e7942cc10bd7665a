"""A real server with every plugin that exports metrics, real queries through it, and its scrape.

`reference_scrape()` starts, on loopback, the stub upstream of tests/upstream.py, a fake API
server (tests/k8s/fakeapi.py) and the real server with a Corefile that uses cache, forward,
health, hosts, kubernetes (the spec's reference cluster from tests/fixtures/k8s/reference.yaml,
plus a second block watching the fake API, so the API-client series have samples), loadbalance,
loop, prometheus, ready and template. It sends the queries of `QUERIES` with dig, changes an
EndpointSlice on the fake API (DNS programming latency), waits for the health self-check's first
sample, and returns the parsed `/metrics` text. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from clusterdns.plugins import SETUP
from tests.dnstest import dig, http_get, running_server
from tests.k8s.fakeapi import FakeApi
from tests.upstream import scripted_upstream

ROOT: Final = Path(__file__).resolve().parents[2]
REFERENCE_YAML: Final = ROOT / "tests" / "fixtures" / "k8s" / "reference.yaml"
SCRAPE_TIMEOUT_S: Final = 20.0

COREFILE: Final = """\
.:0 {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:0
    ready 127.0.0.1:0
    prometheus 127.0.0.1:0
    acl {{
        block type AXFR
        allow
    }}
    rrl {{
        responses-per-second 100000
    }}
    hosts {hosts} {{
        192.0.2.7 inline.hosts.example
        fallthrough
    }}
    template IN TXT template.example {{
        answer "{{{{ .Name }}}} 60 IN TXT \\"templated\\""
    }}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        from_yaml {reference}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . {upstream}
    cache 30
    loop
    {reload}
    loadbalance
}}
api.test:0 {{
    bind 127.0.0.1
    kubernetes api.test {{
        endpoint {api}
    }}
}}
"""

QUERIES: Final[tuple[tuple[str, ...], ...]] = (
    ("kubernetes.default.svc.cluster.local", "A"),
    ("api.prod.svc.cluster.local", "AAAA"),
    ("_http._tcp.web.prod.svc.cluster.local", "SRV", "+tcp"),
    ("nosuch.prod.svc.cluster.local", "A"),
    ("-x", "10.96.0.10"),
    ("db.example.com", "A"),
    ("db.example.com", "A"),  # a cache hit
    ("nosuch.example", "A", "+dnssec"),  # DO bit, NXDOMAIN from upstream
    ("hosted.example", "A"),
    ("inline.hosts.example", "A"),
    ("x.template.example", "TXT"),
    ("x.template.example", "TXT"),
)
"""dig arguments: every plugin answers at least once, over UDP and TCP."""

SLICE_SERVICE: Final = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "timed", "namespace": "default"},
    "spec": {
        "type": "ClusterIP",
        "clusterIP": "10.96.9.9",
        "clusterIPs": ["10.96.9.9"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    },
}


def timed_slice(trigger: float) -> dict[str, object]:
    """An EndpointSlice of `SLICE_SERVICE` carrying a last-change-trigger-time annotation."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(trigger))
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "timed-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "timed"},
            "annotations": {
                "endpoints.kubernetes.io/last-change-trigger-time": f"{stamp}.000000000Z"
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.9.9"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }


@dataclass(frozen=True)
class Family:
    """One scraped metric family."""

    name: str
    """The exposition name (counters with their `_total`)."""
    type: str
    labels: frozenset[str]
    """Label names of its samples, `le` left out (empty when it has no sample)."""
    buckets: tuple[float, ...]
    """Histogram bucket bounds without +Inf (empty otherwise, or without samples)."""
    samples: tuple[tuple[str, dict[str, str], float], ...]
    """(sample name, labels, value) of every sample."""


@dataclass(frozen=True)
class Scrape:
    """A parsed /metrics response."""

    text: str
    families: dict[str, Family]

    def value(self, sample: str, **labels: str) -> float:
        """The sum of the samples called `sample` whose labels include `labels`."""
        total = 0.0
        for fam in self.families.values():
            for name, have, value in fam.samples:
                if name == sample and all(have.get(k) == v for k, v in labels.items()):
                    total += value
        return total


def parse_scrape(text: str) -> Scrape:
    """Parse Prometheus text exposition into families keyed by exposition name."""
    families: dict[str, Family] = {}
    for fam in text_string_to_metric_families(text):
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        labels: set[str] = set()
        bounds: set[float] = set()
        samples = []
        for s in fam.samples:
            labels.update(k for k in s.labels if k != "le")
            if s.name.endswith("_bucket") and "le" in s.labels and s.labels["le"] != "+Inf":
                bounds.add(float(s.labels["le"]))
            samples.append((s.name, dict(s.labels), float(s.value)))
        families[name] = Family(
            name, fam.type, frozenset(labels), tuple(sorted(bounds)), tuple(samples)
        )
    return Scrape(text, families)


Wanted = tuple[str, dict[str, str]]


async def _until(port: int, ready: Sequence[Wanted], timeout_s: float = SCRAPE_TIMEOUT_S) -> Scrape:
    """Scrape until every (sample name, labels) in `ready` has a non-zero value (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = await http_get(port, "/metrics")
        assert reply.status == 200
        scrape = parse_scrape(reply.text)
        missing = [want for want in ready if not scrape.value(want[0], **want[1])]
        if not missing:
            return scrape
        if time.monotonic() > deadline:
            raise AssertionError(f"no samples for {missing} after {timeout_s} s")
        await asyncio.sleep(0.1)


def collect(tmp_path: Path) -> Scrape:
    """Run `reference_scrape` from synchronous code (a module fixture); the server is gone after."""

    async def run() -> Scrape:
        async with reference_scrape(tmp_path) as scrape:
            return scrape

    return asyncio.run(run())


@contextlib.asynccontextmanager
async def reference_scrape(tmp_path: Path) -> AsyncIterator[Scrape]:
    """Run the queries through a fully equipped server; yield its scrape while it runs."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.8 hosted.example\n")
    fake = FakeApi().start()
    try:
        async with scripted_upstream() as upstream:
            corefile = COREFILE.format(
                hosts=hosts,
                reference=REFERENCE_YAML,
                upstream=upstream.addr,
                api=fake.url,
                # reload comes with its own issue; its series are checked once it exists.
                reload="reload" if "reload" in SETUP else "",
            )
            async with running_server(corefile) as server:
                http_port = server.config.process.http.listeners["127.0.0.1:0"].port
                dns_port = server.port()
                for args in QUERIES:
                    out = await dig(dns_port, *args)
                    assert "status: " in out, out
                ready = await http_get(http_port, "/ready")
                assert (ready.status, ready.body) == (200, b"OK")
                # The slice counts only once its Service is known (spec §6.15): one after the other.
                fake.create(SLICE_SERVICE)
                events = "clusterdns_kubernetes_events_total"
                await _until(http_port, [(events, {"resource": "services", "type": "ADDED"})])
                fake.create(timed_slice(math.floor(time.time()) - 1))
                yield await _until(
                    http_port,
                    (
                        ("coredns_health_request_duration_seconds_count", {}),
                        ("coredns_kubernetes_dns_programming_duration_seconds_count", {}),
                        ("coredns_kubernetes_rest_client_requests_total", {}),
                    ),
                )
    finally:
        fake.down()
