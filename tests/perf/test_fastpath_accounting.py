"""A replay is counted as the full chain counts it, and a cluster change ends every replay.

Metrics: the same queries (UDP and TCP, IPv4 and IPv6, with and without DO) are asked N+1 times
with the fast path on (one full-chain answer, N replays) and N+1 times with it off; the change
in every `coredns_dns_*` series must be the same, except the durations a replay observes (a
constant, the first bucket), of which only the count is compared.
Invalidation: changing the Store (as a watch event does) bumps the zone's generation, so the next
query runs the full chain and sees the change; the one after replays the new reply.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dnslib import DNSRecord

from clusterdns.k8s.objects import EndpointAddress, EndpointSlice, Kind, Port, Service
from tests.perf.rig import Rig, family, kubeadm_rig, query, with_id
from tests.plugins.kubernetes.cluster import REFERENCE_YAML

N = 5
QUERIES = [
    (query("api.prod.svc.cluster.local.", "A"), "udp", "127.0.0.1"),
    (query("Api.Prod.svc.cluster.local.", "A", edns=1232), "udp", "::1"),
    (query("nosuch.prod.svc.cluster.local.", "A", edns=1232, do=True), "udp", "127.0.0.1"),
    (query("nosuch.svc.cluster.local.", "AAAA", edns=4096, do=True), "udp", "::1"),
    (query("_https._tcp.kubernetes.default.svc.cluster.local.", "SRV"), "udp", "127.0.0.1"),
    (query("10-244-1-30.prod.pod.cluster.local.", "TXT"), "udp", "127.0.0.1"),
    (query("api.prod.svc.cluster.local.", "AAAA", edns=1232, do=True), "tcp", "127.0.0.1"),
    (query("nosuch.prod.svc.cluster.local.", "A"), "tcp", "::1"),
]

EXACT = (
    "coredns_dns_requests_total",
    "coredns_dns_do_requests_total",
    "coredns_dns_request_size_bytes",
    "coredns_dns_response_size_bytes",
    "coredns_dns_responses_total",
)


async def deltas(rig: Rig, *, fast: bool) -> dict[str, float]:
    """What N+1 rounds of QUERIES add to every sample."""
    rig.block.fastpath = fast
    rig.clear()
    before = rig.scrape()
    for wire, proto, host in QUERIES:
        for i in range(N + 1):
            await rig.ask(with_id(wire, i + 1), proto=proto, host=host)
    after = rig.scrape()
    rig.block.fastpath = True
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def pick(samples: dict[str, float], families: tuple[str, ...]) -> dict[str, float]:
    return {k: v for k, v in samples.items() if family(k) in families}


async def test_replays_count_like_the_full_chain() -> None:
    async with kubeadm_rig() as rig:
        hits = rig.hits
        fast = await deltas(rig, fast=True)
        assert rig.hits - hits == N * len(QUERIES)  # every repeat was a replay
        full = await deltas(rig, fast=False)
        assert rig.hits - hits == N * len(QUERIES)  # and none with the fast path off
    assert pick(fast, EXACT) == pick(full, EXACT)
    assert pick(fast, EXACT)  # something was counted at all
    count = "coredns_dns_request_duration_seconds_count"
    assert {k: v for k, v in fast.items() if k.startswith(count)} == {
        k: v for k, v in full.items() if k.startswith(count)
    }
    assert sum(v for k, v in fast.items() if k.startswith(count)) == (N + 1) * len(QUERIES)


async def test_replays_count_every_plugin_series_without_a_cache() -> None:
    # Without a cache in front, every coredns_* series moves the same way, durations aside.
    async with kubeadm_rig(cache=None) as rig:
        fast = await deltas(rig, fast=True)
        full = await deltas(rig, fast=False)

    def comparable(samples: dict[str, float]) -> dict[str, float]:
        duration = "coredns_dns_request_duration_seconds"
        return {
            k: v
            for k, v in samples.items()
            if k.startswith("coredns_") and not (family(k) == duration and "_count" not in k)
        }

    assert comparable(fast) == comparable(full)


async def test_replays_count_the_cache_series_too() -> None:
    async with kubeadm_rig() as rig:
        fast = await deltas(rig, fast=True)
        full = await deltas(rig, fast=False)

    def counters(samples: dict[str, float]) -> dict[str, float]:
        # coredns_cache_entries is a gauge (state, not a count of queries).
        return {
            k: v for k, v in samples.items() if k.startswith("coredns_cache_") and "_total" in k
        }

    assert counters(fast) == counters(full)
    assert counters(full)


async def test_a_store_change_ends_the_replays() -> None:
    async with kubeadm_rig() as rig:
        positive = query("api.prod.svc.cluster.local.", "A")
        negative = query("late.prod.svc.cluster.local.", "A", edns=1232)
        for wire in (positive, negative):
            await rig.ask(wire)
        before = rig.hits
        assert DNSRecord.parse(await rig.ask(positive)).rr[0].rdata is not None
        nx = DNSRecord.parse(await rig.ask(negative))
        assert rig.hits == before + 2 and nx.header.rcode == 3

        api = rig.store.service("prod", "api")
        assert api is not None
        rig.store.apply(
            Kind.SERVICE,
            "MODIFIED",
            dataclasses.replace(api, cluster_ips=("10.96.5.6", "fd00:10:96::5")),
        )
        late = Service("prod", "late", "ClusterIP", ("10.96.8.8",), "", (Port("http", "TCP", 80),))
        rig.store.apply(Kind.SERVICE, "ADDED", late)

        before = rig.hits
        moved = DNSRecord.parse(await rig.ask(with_id(positive, 9)))
        added = DNSRecord.parse(await rig.ask(with_id(negative, 9)))
        assert rig.hits == before  # both ran the full chain
        assert [str(r.rdata) for r in moved.rr] == ["10.96.5.6"]
        assert added.header.rcode == 0 and [str(r.rdata) for r in added.rr] == ["10.96.8.8"]
        again = DNSRecord.parse(await rig.ask(with_id(positive, 10)))
        assert rig.hits == before + 1 and [str(r.rdata) for r in again.rr] == ["10.96.5.6"]


async def test_an_endpoint_change_ends_the_replays_of_the_zone() -> None:
    # Any change moves the SOA serial, so negative replies of the zone go too.
    async with kubeadm_rig() as rig:
        wire = query("nothing.default.svc.cluster.local.", "A")
        first = DNSRecord.parse(await rig.ask(wire))
        before = rig.hits
        await rig.ask(wire)
        assert rig.hits == before + 1
        slice_ = EndpointSlice(
            "prod",
            "empty-abc",
            "empty",
            (Port("http", "TCP", 80),),
            (EndpointAddress("10.244.9.9"),),
        )
        rig.store.apply(Kind.ENDPOINTSLICE, "ADDED", slice_)
        after = DNSRecord.parse(await rig.ask(wire))
        assert rig.hits == before + 1
        assert after.auth[0].rdata.times[0] >= first.auth[0].rdata.times[0]


def many_ports_yaml(path: Path, ports: int = 40) -> Path:
    """A ClusterIP service in `prod` with many named ports: a big SRV reply nobody shuffles."""
    port_lines = "".join(
        f"    - {{name: p{i}, port: {1000 + i}, protocol: TCP}}\n" for i in range(ports)
    )
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: many\n  namespace: prod\n"
        "spec:\n  type: ClusterIP\n  clusterIP: 10.96.9.9\n  clusterIPs: [10.96.9.9]\n"
        f"  ports:\n{port_lines}"
    )
    return path


async def test_truncated_replies_are_not_replayed(tmp_path: Path) -> None:
    extra = many_ports_yaml(tmp_path / "many.yaml")
    async with kubeadm_rig(files=(REFERENCE_YAML, extra)) as rig:
        small = query("many.prod.svc.cluster.local.", "SRV")
        big = query("many.prod.svc.cluster.local.", "SRV", edns=4096)
        first = DNSRecord.parse(await rig.ask(small))
        assert first.header.tc
        before = rig.hits
        await rig.ask(small)
        assert rig.hits == before  # TC: never stored
        full = await rig.ask(big)
        assert not DNSRecord.parse(full).header.tc
        replay = await rig.ask(with_id(big, 5))
        assert rig.hits == before + 1 and replay[2:] == full[2:]
        over_tcp = await rig.ask(small, proto="tcp")
        again = await rig.ask(with_id(small, 6), proto="tcp")
        assert rig.hits == before + 2 and again[2:] == over_tcp[2:]
        assert not DNSRecord.parse(again).header.tc
