"""Every worked example of spec §6.14: the reference cluster, the reference Corefile, ttl 30.

The plugin runs without a `cache` in front, so TTLs are the ones the plugin (or the upstream
stand-in) writes, as the spec's notes give them "without a cache". Each case also states which
queries reached the upstream stand-in (forward), in order.
"""

from __future__ import annotations

import pytest

from clusterdns.dnsutil import rcode as rc
from clusterdns.k8s.objects import Kind
from tests.dnstest import RecordingWriter, make_request
from tests.plugins.kubernetes.cluster import (
    AA,
    FORWARDED,
    OUTSIDE,
    REFERENCE_YAML,
    SOA,
    K8sCase,
    load_store,
    make_plugin,
    nodata,
    nx,
    ok,
    reference_corefile,
    soa,
)

SERVICE_RECORDS = [
    ok(
        "kubernetes.default.svc.cluster.local.",
        "A",
        ["kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"],
    ),
    nodata("kubernetes.default.svc.cluster.local.", "AAAA"),
    ok(
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "SRV",
        [
            "_https._tcp.kubernetes.default.svc.cluster.local. 30 IN SRV 0 100 443 "
            "kubernetes.default.svc.cluster.local."
        ],
        ["kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"],
    ),
    ok("api.prod.svc.cluster.local.", "A", ["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"]),
    ok(
        "api.prod.svc.cluster.local.",
        "AAAA",
        ["api.prod.svc.cluster.local. 30 IN AAAA fd00:10:96::5"],
    ),
    ok(
        "api.prod.svc.cluster.local.",
        "SRV",
        [
            "api.prod.svc.cluster.local. 30 IN SRV 0 25 80 api.prod.svc.cluster.local.",
            "api.prod.svc.cluster.local. 30 IN SRV 0 25 9090 api.prod.svc.cluster.local.",
        ],
        [
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
            "api.prod.svc.cluster.local. 30 IN AAAA fd00:10:96::5",
        ],
    ),
    ok(
        "_grpc._tcp.api.prod.svc.cluster.local.",
        "SRV",
        ["_grpc._tcp.api.prod.svc.cluster.local. 30 IN SRV 0 50 9090 api.prod.svc.cluster.local."],
        [
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
            "api.prod.svc.cluster.local. 30 IN AAAA fd00:10:96::5",
        ],
    ),
    nx("_grpc._udp.api.prod.svc.cluster.local.", "SRV"),
    ok(
        "kube-dns.kube-system.svc.cluster.local.",
        "SRV",
        [
            "kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 33 53 "
            "kube-dns.kube-system.svc.cluster.local.",
            "kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 33 9153 "
            "kube-dns.kube-system.svc.cluster.local.",
        ],
        ["kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"],
    ),
    ok(
        "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
        "SRV",
        [
            "_dns._udp.kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 100 53 "
            "kube-dns.kube-system.svc.cluster.local."
        ],
        ["kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"],
    ),
    ok(
        "dns.udp.kube-dns.kube-system.svc.cluster.local.",
        "SRV",
        [
            "dns.udp.kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 100 53 "
            "kube-dns.kube-system.svc.cluster.local."
        ],
        ["kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"],
    ),
    ok(
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "A",
        ["_https._tcp.kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"],
    ),
    ok("empty.prod.svc.cluster.local.", "A", ["empty.prod.svc.cluster.local. 30 IN A 10.96.7.7"]),
    K8sCase(
        qname="empty.prod.svc.cluster.local.",
        rcode="NXDOMAIN",
        ns=[SOA],
        flags=AA,
        options="ignore empty_service",
    ),
]

ENDPOINTS_OF_CLUSTER_IP = [
    ok(
        "10-244-1-20.api.prod.svc.cluster.local.",
        "A",
        ["10-244-1-20.api.prod.svc.cluster.local. 30 IN A 10.244.1.20"],
    ),
    nx("10-244-2-21.api.prod.svc.cluster.local."),
]

HEADLESS = [
    ok(
        "web.prod.svc.cluster.local.",
        "A",
        [
            "web.prod.svc.cluster.local. 30 IN A 10.244.1.10",
            "web.prod.svc.cluster.local. 30 IN A 10.244.2.11",
            "web.prod.svc.cluster.local. 30 IN A 10.244.3.12",
        ],
    ),
    ok(
        "web.prod.svc.cluster.local.",
        "AAAA",
        ["web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c"],
    ),
    ok(
        "web-0.web.prod.svc.cluster.local.",
        "A",
        ["web-0.web.prod.svc.cluster.local. 30 IN A 10.244.1.10"],
    ),
    nodata("web-0.web.prod.svc.cluster.local.", "AAAA"),
    ok(
        "10-244-3-12.web.prod.svc.cluster.local.",
        "A",
        ["10-244-3-12.web.prod.svc.cluster.local. 30 IN A 10.244.3.12"],
    ),
    ok(
        "fd00-10-244--c.web.prod.svc.cluster.local.",
        "AAAA",
        ["fd00-10-244--c.web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c"],
    ),
    ok(
        "_http._tcp.web.prod.svc.cluster.local.",
        "SRV",
        [
            "_http._tcp.web.prod.svc.cluster.local. 30 IN SRV 0 25 80 "
            "web-0.web.prod.svc.cluster.local.",
            "_http._tcp.web.prod.svc.cluster.local. 30 IN SRV 0 25 80 "
            "web-1.web.prod.svc.cluster.local.",
            "_http._tcp.web.prod.svc.cluster.local. 30 IN SRV 0 25 80 "
            "10-244-3-12.web.prod.svc.cluster.local.",
            "_http._tcp.web.prod.svc.cluster.local. 30 IN SRV 0 25 80 "
            "fd00-10-244--c.web.prod.svc.cluster.local.",
        ],
        [
            "web-0.web.prod.svc.cluster.local. 30 IN A 10.244.1.10",
            "web-1.web.prod.svc.cluster.local. 30 IN A 10.244.2.11",
            "10-244-3-12.web.prod.svc.cluster.local. 30 IN A 10.244.3.12",
            "fd00-10-244--c.web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c",
        ],
    ),
    nx("lonely.prod.svc.cluster.local."),
    ok("bare.prod.svc.cluster.local.", "A", ["bare.prod.svc.cluster.local. 30 IN A 10.244.4.40"]),
    nodata("bare.prod.svc.cluster.local.", "SRV"),
    nx("nobody.web.prod.svc.cluster.local."),
    nx("a.b.c.web.prod.svc.cluster.local."),
]

EXTERNAL_NAME = [
    K8sCase(
        qname="db.prod.svc.cluster.local.",
        qtype="A",
        flags=AA,
        ordered=True,
        answer=[
            "db.prod.svc.cluster.local. 30 IN CNAME db.example.com.",
            "db.example.com. 300 IN A 192.0.2.50",
        ],
        upstream=("db.example.com. A",),
    ),
    ok(
        "db.prod.svc.cluster.local.",
        "CNAME",
        ["db.prod.svc.cluster.local. 30 IN CNAME db.example.com."],
    ),
    nodata("db.prod.svc.cluster.local.", "SRV"),
    nodata("db.prod.svc.cluster.local.", "TXT"),
    nodata("db.prod.svc.cluster.local.", "MX"),
    nodata("db.prod.svc.cluster.local.", "HTTPS"),
    K8sCase(
        qname="alias.prod.svc.cluster.local.",
        qtype="A",
        flags=AA,
        ordered=True,
        answer=[
            "alias.prod.svc.cluster.local. 30 IN CNAME api.prod.svc.cluster.local.",
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
        ],
    ),
    nx("ipname.prod.svc.cluster.local."),
    nx("x.db.prod.svc.cluster.local."),
]

NAMESPACES_AND_NON_NAMES = [
    nx("nosuch.prod.svc.cluster.local."),
    nx("api.nosuchns.svc.cluster.local."),
    nodata("prod.svc.cluster.local."),
    nodata("empty-ns.svc.cluster.local."),
    nx("nosuchns.svc.cluster.local."),
    nodata("svc.cluster.local."),
    nodata("pod.cluster.local."),
    nx("foo.cluster.local."),
    nx("*.prod.svc.cluster.local."),
    nx("*.svc.cluster.local.", "SRV"),
    nx("api.*.svc.cluster.local."),
    nx("google.com.prod.svc.cluster.local."),
    nodata("nosuch.prod.svc.cluster.local.", "SOA"),
    nodata("api.prod.svc.cluster.local.", "TXT"),
    nx("prod.svc.cluster.local.", "TXT"),
    nodata("api.prod.svc.cluster.local.", "MX"),
    nodata("api.prod.svc.cluster.local.", "ANY"),
    nodata("api.prod.svc.cluster.local.", "PTR"),
    nx("nosuch.prod.svc.cluster.local.", "PTR"),
    nodata("prod.svc.cluster.local.", "NS"),
    nx("foo.svc.cluster.local.", "NS"),
]

APEX = [
    ok("cluster.local.", "SOA", [SOA]),
    ok(
        "cluster.local.",
        "NS",
        ["cluster.local. 30 IN NS kube-dns.kube-system.svc.cluster.local."],
        ["kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"],
    ),
    K8sCase(
        qname="cluster.local.",
        qtype="NS",
        flags=AA,
        local=tuple(OUTSIDE),
        answer=["cluster.local. 30 IN NS ns.dns.cluster.local."],
        extra=["ns.dns.cluster.local. 30 IN A 192.0.2.7"],
    ),
    ok("ns.dns.cluster.local.", "A", ["ns.dns.cluster.local. 30 IN A 10.96.0.10"]),
    nodata("cluster.local.", "A"),
    nodata("cluster.local.", "AAAA"),
    nodata("cluster.local.", "SRV"),
    nodata("cluster.local.", "HINFO"),
    nx("cluster.local.", "TXT"),
    ok("dns-version.cluster.local.", "TXT", ['dns-version.cluster.local. 28800 IN TXT "1.1.0"']),
    nx("dns-version.cluster.local.", "A"),
]

REVERSE = [
    ok(
        "1.0.96.10.in-addr.arpa.",
        "PTR",
        ["1.0.96.10.in-addr.arpa. 30 IN PTR kubernetes.default.svc.cluster.local."],
    ),
    ok(
        "10.1.244.10.in-addr.arpa.",
        "PTR",
        ["10.1.244.10.in-addr.arpa. 30 IN PTR web-0.web.prod.svc.cluster.local."],
    ),
    ok(
        "12.3.244.10.in-addr.arpa.",
        "PTR",
        ["12.3.244.10.in-addr.arpa. 30 IN PTR 10-244-3-12.web.prod.svc.cluster.local."],
    ),
    ok(
        "20.1.244.10.in-addr.arpa.",
        "PTR",
        ["20.1.244.10.in-addr.arpa. 30 IN PTR 10-244-1-20.api.prod.svc.cluster.local."],
    ),
    ok(
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
        [
            "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 30 IN PTR "
            "api.prod.svc.cluster.local."
        ],
    ),
    # NXDOMAIN in kubernetes -> fallthrough (in-addr.arpa) -> forward -> whatever upstream says.
    K8sCase(
        qname="30.1.244.10.in-addr.arpa.",
        qtype="PTR",
        rcode="NXDOMAIN",
        flags=FORWARDED,
        upstream=("30.1.244.10.in-addr.arpa. PTR",),
    ),
    K8sCase(
        qname="8.8.8.8.in-addr.arpa.",
        qtype="PTR",
        flags=FORWARDED,
        answer=["8.8.8.8.in-addr.arpa. 300 IN PTR dns.google."],
        upstream=("8.8.8.8.in-addr.arpa. PTR",),
    ),
    K8sCase(
        qname="0.96.10.in-addr.arpa.",
        qtype="PTR",
        rcode="NXDOMAIN",
        flags=FORWARDED,
        upstream=("0.96.10.in-addr.arpa. PTR",),
    ),
]

PODS = [
    ok(
        "10-244-1-30.prod.pod.cluster.local.",
        "A",
        ["10-244-1-30.prod.pod.cluster.local. 30 IN A 10.244.1.30"],
    ),
    ok(
        "10-244-9-9.prod.pod.cluster.local.",
        "A",
        ["10-244-9-9.prod.pod.cluster.local. 30 IN A 10.244.9.9"],
    ),
    nx("10-244-1-30.nosuchns.pod.cluster.local."),
    nx("ip-10-244-1-30.prod.pod.cluster.local."),
    nx("blah.prod.pod.cluster.local."),
    nx("blah.prod.pod.cluster.local.", "HINFO"),
    nodata("10-244-1-30.prod.pod.cluster.local.", "AAAA"),
    nodata("prod.pod.cluster.local."),
    K8sCase(
        qname="10-244-9-9.prod.pod.cluster.local.",
        rcode="NXDOMAIN",
        ns=[SOA],
        flags=AA,
        options="pods verified",
    ),
    K8sCase(
        qname="10-244-1-30.prod.pod.cluster.local.",
        rcode="NXDOMAIN",
        ns=[SOA],
        flags=AA,
        options="pods disabled",
    ),
]

ROUTING = [
    # Not a plugin zone -> next plugin (loop -> forward), relayed as upstream wrote it.
    K8sCase(
        qname="example.com.",
        qtype="A",
        flags=FORWARDED,
        answer=["example.com. 3600 IN A 93.184.215.14"],
        upstream=("example.com. A",),
    ),
]

CASES = (
    SERVICE_RECORDS
    + ENDPOINTS_OF_CLUSTER_IP
    + HEADLESS
    + EXTERNAL_NAME
    + NAMESPACES_AND_NON_NAMES
    + APEX
    + REVERSE
    + PODS
    + ROUTING
)


@pytest.mark.parametrize("case", CASES, ids=K8sCase.label)
async def test_reference_example(case: K8sCase) -> None:
    await case.run()


def test_every_worked_example_is_covered() -> None:
    # §6.14 has 90 example queries: the 88 above, AXFR and the not-synced SERVFAIL below.
    assert len(CASES) == 88
    assert len({c.label() for c in CASES}) == len(CASES)


async def test_apex_axfr_is_refused_without_writing() -> None:
    s = nx("cluster.local.").setup()
    req = make_request("cluster.local.", "AXFR")
    w = RecordingWriter(req)
    assert await s.plugin.serve(req, w) == rc.REFUSED
    assert not w.written
    assert s.upstream.calls == []


async def test_name_error_before_initial_sync_is_servfail() -> None:
    # Namespaces and Services are listed, EndpointSlices and Pods not yet: positive data is
    # served (quirk Q20), a name error becomes an authoritative SERVFAIL with the SOA.
    store = load_store(REFERENCE_YAML, kinds=(Kind.NAMESPACE, Kind.SERVICE))
    assert not store.synced
    s = make_plugin(reference_corefile(), store)
    servfail = K8sCase(qname="nosuch.prod.svc.cluster.local.", rcode="SERVFAIL", flags=AA, ns=[SOA])
    positive = ok(
        "api.prod.svc.cluster.local.", "A", ["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"]
    )
    headless = K8sCase(qname="web.prod.svc.cluster.local.", rcode="SERVFAIL", flags=AA, ns=[SOA])
    for case in (servfail, positive, headless):
        req = case.request()
        w = RecordingWriter(req)
        code = await s.plugin.serve(req, w)
        case.check(w.reply())
        assert code == rc.RCODES_BY_NAME[case.rcode]
    assert s.upstream.calls == []


async def test_name_error_before_any_list_has_serial_zero() -> None:
    store = load_store(REFERENCE_YAML, kinds=())
    s = make_plugin(reference_corefile(), store)
    case = K8sCase(
        qname="nosuch.prod.svc.cluster.local.", rcode="SERVFAIL", flags=AA, ns=[soa(serial=0)]
    )
    req = case.request()
    w = RecordingWriter(req)
    await s.plugin.serve(req, w)
    case.check(w.reply())
