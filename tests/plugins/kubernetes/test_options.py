"""The rules of spec §6.3-6.12 beyond the worked examples: options in effect, letter case, the
server's own NS records, reverse lookups, pods, ExternalName chains and loops.

Every case runs the reference Corefile (ttl 30, pods insecure, fallthrough in-addr.arpa ip6.arpa)
plus its option lines, against the reference cluster (and, where named, the edge fixture).
"""

from __future__ import annotations

from typing import Final

import pytest

from tests.plugins.kubernetes.cluster import (
    AA,
    EDGE_YAML,
    REFERENCE_YAML,
    K8sCase,
    forwarded,
    nodata,
    nx,
    ok,
    soa,
)

BOTH: Final = (REFERENCE_YAML, EDGE_YAML)

NAMESPACES = [
    # §6.9: a namespace hidden by `namespaces` is NXDOMAIN, not NODATA (Q19).
    nx("kubernetes.default.svc.cluster.local.", options="namespaces prod"),
    nx("default.svc.cluster.local.", options="namespaces prod"),
    nodata("prod.svc.cluster.local.", options="namespaces prod"),
    ok(
        "api.prod.svc.cluster.local.",
        "A",
        ["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"],
        options="namespaces prod",
    ),
    nx("10-244-1-30.default.pod.cluster.local.", options="namespaces prod"),
    ok(
        "10-244-1-30.prod.pod.cluster.local.",
        "A",
        ["10-244-1-30.prod.pod.cluster.local. 30 IN A 10.244.1.30"],
        options="namespaces prod",
    ),
    # PTRs are filtered by `namespaces`: the cluster IP of default/kubernetes has none ...
    forwarded("1.0.96.10.in-addr.arpa.", "PTR", options="namespaces prod"),
    ok(
        "20.1.244.10.in-addr.arpa.",
        "PTR",
        ["20.1.244.10.in-addr.arpa. 30 IN PTR 10-244-1-20.api.prod.svc.cluster.local."],
        options="namespaces prod",
    ),
    # ... but not by `namespace_labels` (Q14), which hides the namespace everywhere else.
    nx("kubernetes.default.svc.cluster.local.", options="namespace_labels env=prod"),
    nx("default.svc.cluster.local.", options="namespace_labels env=prod"),
    ok(
        "api.prod.svc.cluster.local.",
        "A",
        ["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"],
        options="namespace_labels env=prod",
    ),
    ok(
        "1.0.96.10.in-addr.arpa.",
        "PTR",
        ["1.0.96.10.in-addr.arpa. 30 IN PTR kubernetes.default.svc.cluster.local."],
        options="namespace_labels env=prod",
    ),
]

ENDPOINT_POD_NAMES = [
    ok(
        "web-7f9c-abcde.web.prod.svc.cluster.local.",
        "A",
        ["web-7f9c-abcde.web.prod.svc.cluster.local. 30 IN A 10.244.3.12"],
        options="endpoint_pod_names",
    ),
    nx("10-244-3-12.web.prod.svc.cluster.local.", options="endpoint_pod_names"),
    ok(
        "web-0.web.prod.svc.cluster.local.",
        "A",
        ["web-0.web.prod.svc.cluster.local. 30 IN A 10.244.1.10"],
        options="endpoint_pod_names",
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
            "web-7f9c-abcde.web.prod.svc.cluster.local.",
            "_http._tcp.web.prod.svc.cluster.local. 30 IN SRV 0 25 80 "
            "fd00-10-244--c.web.prod.svc.cluster.local.",
        ],
        [
            "web-0.web.prod.svc.cluster.local. 30 IN A 10.244.1.10",
            "web-1.web.prod.svc.cluster.local. 30 IN A 10.244.2.11",
            "web-7f9c-abcde.web.prod.svc.cluster.local. 30 IN A 10.244.3.12",
            "fd00-10-244--c.web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c",
        ],
        options="endpoint_pod_names",
    ),
    ok(
        "12.3.244.10.in-addr.arpa.",
        "PTR",
        ["12.3.244.10.in-addr.arpa. 30 IN PTR web-7f9c-abcde.web.prod.svc.cluster.local."],
        options="endpoint_pod_names",
    ),
    ok(
        "api-6b7d9-qwert.api.prod.svc.cluster.local.",
        "A",
        ["api-6b7d9-qwert.api.prod.svc.cluster.local. 30 IN A 10.244.1.20"],
        options="endpoint_pod_names",
    ),
    # A pod name of 64+ characters falls back to the dashed address.
    ok(
        "10-244-8-3.twins.edge.svc.cluster.local.",
        "A",
        ["10-244-8-3.twins.edge.svc.cluster.local. 30 IN A 10.244.8.3"],
        options="endpoint_pod_names",
        files=BOTH,
    ),
]

NOENDPOINTS = [
    nx("web.prod.svc.cluster.local.", options="noendpoints"),
    nx("web-0.web.prod.svc.cluster.local.", options="noendpoints"),
    nx("bare.prod.svc.cluster.local.", options="noendpoints"),
    nx("10-244-1-20.api.prod.svc.cluster.local.", options="noendpoints"),
    ok(
        "api.prod.svc.cluster.local.",
        "A",
        ["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"],
        options="noendpoints",
    ),
    ok(
        "_grpc._tcp.api.prod.svc.cluster.local.",
        "SRV",
        ["_grpc._tcp.api.prod.svc.cluster.local. 30 IN SRV 0 50 9090 api.prod.svc.cluster.local."],
        [
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
            "api.prod.svc.cluster.local. 30 IN AAAA fd00:10:96::5",
        ],
        options="noendpoints",
    ),
    ok(
        "db.prod.svc.cluster.local.",
        "CNAME",
        ["db.prod.svc.cluster.local. 30 IN CNAME db.example.com."],
        options="noendpoints",
    ),
    forwarded("12.3.244.10.in-addr.arpa.", "PTR", options="noendpoints"),
    ok(
        "1.0.96.10.in-addr.arpa.",
        "PTR",
        ["1.0.96.10.in-addr.arpa. 30 IN PTR kubernetes.default.svc.cluster.local."],
        options="noendpoints",
    ),
    ok(
        "cluster.local.",
        "NS",
        ["cluster.local. 30 IN NS ns.dns.cluster.local."],
        ["ns.dns.cluster.local. 30 IN A 10.244.0.2"],
        options="noendpoints",
    ),
    ok(
        "ns.dns.cluster.local.",
        "A",
        ["ns.dns.cluster.local. 30 IN A 10.244.0.2"],
        options="noendpoints",
    ),
]

IGNORE_EMPTY_SERVICE = [
    nx("empty.prod.svc.cluster.local.", options="ignore empty_service"),
    nx("empty.prod.svc.cluster.local.", "SRV", options="ignore empty_service"),
    nx("empty.prod.svc.cluster.local.", "TXT", options="ignore empty_service"),
    # The fixture has no EndpointSlice for default/kubernetes, so it disappears as well.
    nx("kubernetes.default.svc.cluster.local.", options="ignore empty_service"),
    ok(
        "api.prod.svc.cluster.local.",
        "A",
        ["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"],
        options="ignore empty_service",
    ),
    ok(
        "db.prod.svc.cluster.local.",
        "CNAME",
        ["db.prod.svc.cluster.local. 30 IN CNAME db.example.com."],
        options="ignore empty_service",
    ),
    ok(
        "bare.prod.svc.cluster.local.",
        "A",
        ["bare.prod.svc.cluster.local. 30 IN A 10.244.4.40"],
        options="ignore empty_service",
    ),
    nx("lonely.prod.svc.cluster.local.", options="ignore empty_service"),
]

TTL = [
    ok(
        "api.prod.svc.cluster.local.",
        "A",
        ["api.prod.svc.cluster.local. 0 IN A 10.96.5.5"],
        options="ttl 0",
    ),
    nx("nosuch.prod.svc.cluster.local.", ns=[soa(ttl=0)], options="ttl 0"),
    ok("cluster.local.", "SOA", [soa(ttl=0)], options="ttl 0"),
    ok(
        "dns-version.cluster.local.",
        "TXT",
        ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'],
        options="ttl 0",
    ),
    ok(
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "SRV",
        [
            "_https._tcp.kubernetes.default.svc.cluster.local. 0 IN SRV 0 100 443 "
            "kubernetes.default.svc.cluster.local."
        ],
        ["kubernetes.default.svc.cluster.local. 0 IN A 10.96.0.1"],
        options="ttl 0",
    ),
    # The SOA record's own TTL is capped at 300; its minimum field is the ttl option.
    ok("cluster.local.", "SOA", [soa(ttl=3600)], options="ttl 3600"),
    nodata("api.prod.svc.cluster.local.", "MX", ns=[soa(ttl=3600)], options="ttl 3600"),
    # Upstream TTLs are kept as upstream wrote them.
    K8sCase(
        qname="db.prod.svc.cluster.local.",
        qtype="A",
        flags=AA,
        ordered=True,
        answer=[
            "db.prod.svc.cluster.local. 0 IN CNAME db.example.com.",
            "db.example.com. 300 IN A 192.0.2.50",
        ],
        upstream=("db.example.com. A",),
        options="ttl 0",
    ),
]

POD_TARGET = "10-244-1-30.prod.pod.cluster.local."

PODS = [
    nx("10-244-1-30.prod.pod.cluster.local.", options="pods disabled"),
    nx("prod.pod.cluster.local.", options="pods disabled"),
    nx("prod.pod.cluster.local.", "TXT", options="pods disabled"),
    nodata("pod.cluster.local.", options="pods disabled"),
    ok(
        "10-244-1-30.prod.pod.cluster.local.",
        "A",
        ["10-244-1-30.prod.pod.cluster.local. 30 IN A 10.244.1.30"],
        options="pods verified",
    ),
    nodata("10-244-1-30.prod.pod.cluster.local.", "AAAA", options="pods verified"),
    # CoreDNS answers SRV for pod names (found by the real-CoreDNS differential test; the spec's
    # "other types: NODATA" is wrong for SRV): port 0, the pod name as target, its address as glue.
    ok(
        "10-244-1-30.prod.pod.cluster.local.",
        "SRV",
        [f"10-244-1-30.prod.pod.cluster.local. 30 IN SRV 0 100 0 {POD_TARGET}"],
        ["10-244-1-30.prod.pod.cluster.local. 30 IN A 10.244.1.30"],
        options="pods verified",
    ),
    ok(
        "x.10-244-1-30.Prod.pod.cluster.local.",
        "SRV",
        [f"x.10-244-1-30.Prod.pod.cluster.local. 30 IN SRV 0 100 0 {POD_TARGET}"],
        ["10-244-1-30.prod.pod.cluster.local. 30 IN A 10.244.1.30"],
        options="pods insecure",
    ),
    nx("10-244-9-9.prod.pod.cluster.local.", "SRV", options="pods verified"),
    nx("10-244-1-30.default.pod.cluster.local.", options="pods verified"),
    nodata("prod.pod.cluster.local.", options="pods verified"),
    ok(
        "fd00-10-244--1e.edge.pod.cluster.local.",
        "AAAA",
        ["fd00-10-244--1e.edge.pod.cluster.local. 30 IN AAAA fd00:10:244::1e"],
        options="pods verified",
        files=BOTH,
    ),
    nx("10-244-8-9.edge.pod.cluster.local.", options="pods verified", files=BOTH),
    # insecure (the reference): any parsable address in an exposed namespace.
    ok(
        "fd00-10-244--1e.prod.pod.cluster.local.",
        "AAAA",
        ["fd00-10-244--1e.prod.pod.cluster.local. 30 IN AAAA fd00:10:244::1e"],
    ),
    nodata("fd00-10-244--1e.prod.pod.cluster.local.", "A"),
    nx("010-244-001-030.prod.pod.cluster.local."),
    nx("fd00-10-244--1e.nosuchns.pod.cluster.local.", "AAAA"),
    nodata("10-244-1-30.prod.pod.cluster.local.", "TXT"),
    nodata("10-244-1-30.prod.pod.cluster.local.", "PTR"),
    nx("blah.prod.pod.cluster.local.", "TXT"),
    nx("prod.pod.cluster.local.", "TXT"),
    nx("a.b.c.10-244-1-30.prod.pod.cluster.local."),
]

FALLTHROUGH = [
    # `fallthrough` alone covers every zone: a name error goes on to the next plugin.
    forwarded("nosuch.prod.svc.cluster.local.", options="fallthrough"),
    forwarded("foo.cluster.local.", "TXT", options="fallthrough"),
    # NODATA never falls through.
    nodata("prod.svc.cluster.local.", options="fallthrough"),
    nodata("api.prod.svc.cluster.local.", "MX", options="fallthrough"),
    # Only the listed zones fall through.
    nx("nosuch.prod.svc.cluster.local.", options="fallthrough ip6.arpa"),
    nx("1.1.1.1.in-addr.arpa.", "PTR", ns=[soa("in-addr.arpa.")], options="fallthrough ip6.arpa"),
    forwarded(
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        "PTR",
        options="fallthrough ip6.arpa",
    ),
    forwarded("nosuch.prod.svc.cluster.local.", options="fallthrough cluster.local"),
    # A partial reverse name or a non-PTR query for a reverse name is a name error.
    forwarded("5.5.96.10.in-addr.arpa."),
    forwarded("10.96.in-addr.arpa.", "PTR"),
    forwarded("21.2.244.10.in-addr.arpa.", "PTR"),  # not-ready endpoint: no PTR
    nx("api.prod.svc.in-addr.arpa.", ns=[soa("in-addr.arpa.")], options="fallthrough ip6.arpa"),
    nodata("in-addr.arpa.", "PTR", ns=[soa("in-addr.arpa.")]),
]

LETTER_CASE = [
    ok(
        "KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL.",
        "A",
        ["KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL. 30 IN A 10.96.0.1"],
    ),
    nx("x.prod.svc.ClUsTeR.lOcAl.", ns=[soa("ClUsTeR.lOcAl.")]),
    nodata("PROD.svc.cluster.local.", "MX"),
    ok(
        "_HtTpS._TcP.KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL.",
        "SRV",
        [
            "_HtTpS._TcP.KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL. 30 IN SRV 0 100 443 "
            "kubernetes.default.svc.cLuStEr.LoCaL."
        ],
        ["kubernetes.default.svc.cLuStEr.LoCaL. 30 IN A 10.96.0.1"],
    ),
    ok(
        "WEB-0.Web.Prod.Svc.Cluster.Local.",
        "A",
        ["WEB-0.Web.Prod.Svc.Cluster.Local. 30 IN A 10.244.1.10"],
    ),
    ok(
        "Cluster.Local.",
        "SOA",
        [
            "Cluster.Local. 30 IN SOA ns.dns.Cluster.Local. hostmaster.Cluster.Local. "
            "1700000000 7200 1800 86400 30"
        ],
    ),
    # Q26, deviating from CoreDNS: apex NS and ns.dns match whatever the case.
    ok(
        "Cluster.Local.",
        "NS",
        ["Cluster.Local. 30 IN NS kube-dns.kube-system.svc.Cluster.Local."],
        ["kube-dns.kube-system.svc.Cluster.Local. 30 IN A 10.96.0.10"],
    ),
    ok("NS.DNS.Cluster.Local.", "A", ["NS.DNS.Cluster.Local. 30 IN A 10.96.0.10"]),
    ok("ns.dns.CLUSTER.LOCAL.", "A", ["ns.dns.CLUSTER.LOCAL. 30 IN A 10.96.0.10"]),
    ok("Dns-Version.Cluster.Local.", "TXT", ['Dns-Version.Cluster.Local. 28800 IN TXT "1.1.0"']),
    K8sCase(
        qname="DB.Prod.Svc.Cluster.Local.",
        qtype="A",
        flags=AA,
        ordered=True,
        answer=[
            "DB.Prod.Svc.Cluster.Local. 30 IN CNAME db.example.com.",
            "db.example.com. 300 IN A 192.0.2.50",
        ],
        upstream=("db.example.com. A",),
    ),
    K8sCase(
        qname="Alias.PROD.svc.cluster.local.",
        qtype="A",
        flags=AA,
        ordered=True,
        answer=[
            "Alias.PROD.svc.cluster.local. 30 IN CNAME api.prod.svc.cluster.local.",
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
        ],
    ),
    ok(
        "10-244-1-30.PROD.Pod.Cluster.Local.",
        "A",
        ["10-244-1-30.PROD.Pod.Cluster.Local. 30 IN A 10.244.1.30"],
    ),
    ok(
        "FD00-10-244--C.web.prod.svc.cluster.local.",
        "AAAA",
        ["FD00-10-244--C.web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c"],
    ),
    ok(
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.D.F.IP6.ARPA.",
        "PTR",
        [
            "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.D.F.IP6.ARPA. 30 IN PTR "
            "api.prod.svc.cluster.local."
        ],
    ),
    nx("1.0.96.10.IN-ADDR.ARPA.", ns=[soa("IN-ADDR.ARPA.")], options="fallthrough ip6.arpa"),
]

OWN_RECORDS = [
    ok(
        "in-addr.arpa.",
        "SOA",
        [
            "in-addr.arpa. 30 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 1700000000 7200 "
            "1800 86400 30"
        ],
    ),
    # Q13: NS targets for a reverse zone apex are built in that zone.
    ok(
        "in-addr.arpa.",
        "NS",
        ["in-addr.arpa. 30 IN NS kube-dns.kube-system.svc.in-addr.arpa."],
        ["kube-dns.kube-system.svc.in-addr.arpa. 30 IN A 10.96.0.10"],
    ),
    ok("ns.dns.in-addr.arpa.", "A", ["ns.dns.in-addr.arpa. 30 IN A 10.96.0.10"]),
    ok("dns-version.ip6.arpa.", "TXT", ['dns-version.ip6.arpa. 28800 IN TXT "1.1.0"']),
    nodata("ns.dns.cluster.local.", "AAAA"),
    nx("ns.dns.cluster.local.", "TXT"),
    nodata("ns.dns.cluster.local.", "SRV"),
    nodata("ns.dns.cluster.local.", "MX"),
    nodata("ns.dns.cluster.local.", "SOA"),
    nx("ns.dns.cluster.local.", "PTR"),
    nx("dns.cluster.local."),
    nodata("dns-version.cluster.local.", "SOA"),
    nx("dns-version.cluster.local.", "AAAA"),
    nodata("cluster.local.", "CNAME"),
    nodata("cluster.local.", "PTR"),
    nodata("cluster.local.", "MX"),
    nodata("svc.cluster.local.", "NS"),
    nx("svc.cluster.local.", "TXT"),
    nx("pod.cluster.local.", "TXT"),
    # Outside the cluster: the own addresses, both families.
    ok(
        "ns.dns.cluster.local.",
        "A",
        ["ns.dns.cluster.local. 30 IN A 192.0.2.7"],
        local=("192.0.2.7",),
    ),
    nodata("ns.dns.cluster.local.", "AAAA", local=("192.0.2.7",)),
    ok(
        "cluster.local.",
        "NS",
        ["cluster.local. 30 IN NS ns.dns.cluster.local."],
        ["ns.dns.cluster.local. 30 IN A 192.0.2.7", "ns.dns.cluster.local. 30 IN AAAA 2001:db8::7"],
        local=("192.0.2.7", "2001:db8::7"),
    ),
    ok(
        "ns.dns.cluster.local.",
        "AAAA",
        ["ns.dns.cluster.local. 30 IN AAAA 2001:db8::7"],
        local=("192.0.2.7", "2001:db8::7"),
    ),
    ok(
        "ns.dns.cluster.local.",
        "AAAA",
        ["ns.dns.cluster.local. 30 IN AAAA fe80::1"],
        local=("fe80::1%eth0",),
    ),
    # No non-loopback address at all: no NS record, and ns.dns has no address.
    nodata("cluster.local.", "NS", local=()),
    nodata("ns.dns.cluster.local.", "A", local=()),
    # The server is an endpoint of a headless service: one NS per ready address of its slice.
    ok(
        "cluster.local.",
        "NS",
        [
            "cluster.local. 30 IN NS web-0.web.prod.svc.cluster.local.",
            "cluster.local. 30 IN NS web-1.web.prod.svc.cluster.local.",
            "cluster.local. 30 IN NS 10-244-3-12.web.prod.svc.cluster.local.",
        ],
        [
            "web-0.web.prod.svc.cluster.local. 30 IN A 10.244.1.10",
            "web-1.web.prod.svc.cluster.local. 30 IN A 10.244.2.11",
            "10-244-3-12.web.prod.svc.cluster.local. 30 IN A 10.244.3.12",
        ],
        local=("10.244.1.10",),
    ),
    # ... of a headless and a ClusterIP service at once; and of a dual-stack service.
    ok(
        "cluster.local.",
        "NS",
        [
            "cluster.local. 30 IN NS 10-244-6-60.shared-a.edge.svc.cluster.local.",
            "cluster.local. 30 IN NS shared-b.edge.svc.cluster.local.",
        ],
        [
            "10-244-6-60.shared-a.edge.svc.cluster.local. 30 IN A 10.244.6.60",
            "shared-b.edge.svc.cluster.local. 30 IN A 10.96.6.6",
        ],
        local=("10.244.6.60",),
        files=BOTH,
    ),
    ok(
        "cluster.local.",
        "NS",
        ["cluster.local. 30 IN NS api.prod.svc.cluster.local."],
        [
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
            "api.prod.svc.cluster.local. 30 IN AAAA fd00:10:96::5",
        ],
        local=("10.244.1.20", "192.0.2.7"),
    ),
    ok(
        "ns.dns.cluster.local.",
        "AAAA",
        ["ns.dns.cluster.local. 30 IN AAAA fd00:10:96::5"],
        local=("10.244.1.20",),
    ),
]

REVERSE = [
    ok(
        "60.6.244.10.in-addr.arpa.",
        "PTR",
        [
            "60.6.244.10.in-addr.arpa. 30 IN PTR 10-244-6-60.shared-a.edge.svc.cluster.local.",
            "60.6.244.10.in-addr.arpa. 30 IN PTR 10-244-6-60.shared-b.edge.svc.cluster.local.",
        ],
        files=BOTH,
    ),
    ok(
        "6.6.96.10.in-addr.arpa.",
        "PTR",
        ["6.6.96.10.in-addr.arpa. 30 IN PTR shared-b.edge.svc.cluster.local."],
        files=BOTH,
    ),
    ok(
        "1.8.244.10.in-addr.arpa.",
        "PTR",
        ["1.8.244.10.in-addr.arpa. 30 IN PTR same.twins.edge.svc.cluster.local."],
        files=BOTH,
    ),
    ok(
        "c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
        [
            "c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa. 30 IN PTR "
            "fd00-10-244--c.web.prod.svc.cluster.local."
        ],
    ),
    ok(
        "2.0.244.10.in-addr.arpa.",
        "PTR",
        ["2.0.244.10.in-addr.arpa. 30 IN PTR 10-244-0-2.kube-dns.kube-system.svc.cluster.local."],
    ),
    # PTR targets use the primary (first forward) zone, whatever the zone order.
    ok(
        "1.0.96.10.in-addr.arpa.",
        "PTR",
        ["1.0.96.10.in-addr.arpa. 30 IN PTR kubernetes.default.svc.cluster.local."],
        zones="in-addr.arpa cluster.local other.local",
    ),
]

EXTERNAL_NAME = [
    nodata("self.edge.svc.cluster.local.", files=BOTH),
    nodata("loop1.edge.svc.cluster.local.", files=BOTH),
    nodata("loop2.edge.svc.cluster.local.", "AAAA", files=BOTH),
    # Upstream NXDOMAIN for the target: still NOERROR with the CNAME (Q7).
    ok(
        "nxtarget.edge.svc.cluster.local.",
        "A",
        ["nxtarget.edge.svc.cluster.local. 30 IN CNAME nx.example.net."],
        files=BOTH,
        upstream=("nx.example.net. A",),
    ),
    K8sCase(
        qname="chain.edge.svc.cluster.local.",
        qtype="A",
        flags=AA,
        ordered=True,
        files=BOTH,
        answer=[
            "chain.edge.svc.cluster.local. 30 IN CNAME alias.prod.svc.cluster.local.",
            "alias.prod.svc.cluster.local. 30 IN CNAME api.prod.svc.cluster.local.",
            "api.prod.svc.cluster.local. 30 IN A 10.96.5.5",
        ],
    ),
    K8sCase(
        qname="chain.edge.svc.cluster.local.",
        qtype="AAAA",
        flags=AA,
        ordered=True,
        files=BOTH,
        answer=[
            "chain.edge.svc.cluster.local. 30 IN CNAME alias.prod.svc.cluster.local.",
            "alias.prod.svc.cluster.local. 30 IN CNAME api.prod.svc.cluster.local.",
            "api.prod.svc.cluster.local. 30 IN AAAA fd00:10:96::5",
        ],
    ),
    # An in-cluster target that does not exist: NODATA without the CNAME.
    nodata("missing.edge.svc.cluster.local.", files=BOTH),
    nodata("alias.prod.svc.cluster.local.", "TXT"),
    K8sCase(
        qname="viadb.edge.svc.cluster.local.",
        qtype="A",
        flags=AA,
        ordered=True,
        files=BOTH,
        answer=[
            "viadb.edge.svc.cluster.local. 30 IN CNAME db.prod.svc.cluster.local.",
            "db.prod.svc.cluster.local. 30 IN CNAME db.example.com.",
            "db.example.com. 300 IN A 192.0.2.50",
        ],
        upstream=("db.example.com. A",),
    ),
    K8sCase(
        qname="viadb.edge.svc.cluster.local.",
        qtype="AAAA",
        flags=AA,
        ordered=True,
        files=BOTH,
        answer=[
            "viadb.edge.svc.cluster.local. 30 IN CNAME db.prod.svc.cluster.local.",
            "db.prod.svc.cluster.local. 30 IN CNAME db.example.com.",
        ],
        upstream=("db.example.com. AAAA",),
    ),
    ok(
        "db.prod.svc.cluster.local.",
        "AAAA",
        ["db.prod.svc.cluster.local. 30 IN CNAME db.example.com."],
        upstream=("db.example.com. AAAA",),
    ),
    # Other types decide existence without looking the target up (Q21).
    nodata("db.prod.svc.cluster.local.", "HINFO"),
    nodata("db.prod.svc.cluster.local.", "ANY"),
    nodata("db.prod.svc.cluster.local.", "PTR"),
    nx("_http._tcp.db.prod.svc.cluster.local.", "SRV"),
    nx("ipname.prod.svc.cluster.local.", "TXT"),
    nx("ipname.prod.svc.cluster.local.", "CNAME"),
    ok(
        "alias.prod.svc.cluster.local.",
        "CNAME",
        ["alias.prod.svc.cluster.local. 30 IN CNAME api.prod.svc.cluster.local."],
    ),
]

SERVICES = [
    # Several addresses under one endpoint name; SRV weight counts triples before de-duplication.
    ok(
        "same.twins.edge.svc.cluster.local.",
        "A",
        [
            "same.twins.edge.svc.cluster.local. 30 IN A 10.244.8.1",
            "same.twins.edge.svc.cluster.local. 30 IN A 10.244.8.2",
        ],
        files=BOTH,
    ),
    ok(
        "_http._udp.twins.edge.svc.cluster.local.",
        "SRV",
        [
            "_http._udp.twins.edge.svc.cluster.local. 30 IN SRV 0 33 80 "
            "same.twins.edge.svc.cluster.local.",
            "_http._udp.twins.edge.svc.cluster.local. 30 IN SRV 0 33 80 "
            "10-244-8-3.twins.edge.svc.cluster.local.",
        ],
        [
            "same.twins.edge.svc.cluster.local. 30 IN A 10.244.8.1",
            "same.twins.edge.svc.cluster.local. 30 IN A 10.244.8.2",
            "10-244-8-3.twins.edge.svc.cluster.local. 30 IN A 10.244.8.3",
        ],
        files=BOTH,
    ),
    nx("_http._tcp.twins.edge.svc.cluster.local.", "SRV", files=BOTH),
    ok(
        "http.UDP.twins.edge.svc.cluster.local.",
        "A",
        [
            "http.UDP.twins.edge.svc.cluster.local. 30 IN A 10.244.8.1",
            "http.UDP.twins.edge.svc.cluster.local. 30 IN A 10.244.8.2",
            "http.UDP.twins.edge.svc.cluster.local. 30 IN A 10.244.8.3",
        ],
        files=BOTH,
    ),
    # Endpoint SRV under a ClusterIP service uses the slice's ports.
    ok(
        "10-244-1-20.api.prod.svc.cluster.local.",
        "SRV",
        [
            "10-244-1-20.api.prod.svc.cluster.local. 30 IN SRV 0 50 80 "
            "10-244-1-20.api.prod.svc.cluster.local.",
            "10-244-1-20.api.prod.svc.cluster.local. 30 IN SRV 0 50 9090 "
            "10-244-1-20.api.prod.svc.cluster.local.",
        ],
        ["10-244-1-20.api.prod.svc.cluster.local. 30 IN A 10.244.1.20"],
    ),
    ok(
        "_http._tcp.web.prod.svc.cluster.local.",
        "AAAA",
        ["_http._tcp.web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c"],
    ),
    nx("_https._udp.kubernetes.default.svc.cluster.local."),
    nx("any.prod.svc.cluster.local."),
    nx("*.web.prod.svc.cluster.local."),
    nodata("lonely.prod.svc.cluster.local.", "SOA"),
    nx("lonely.prod.svc.cluster.local.", "SRV"),
    nodata("web.prod.svc.cluster.local.", "TXT"),
    nodata("web.prod.svc.cluster.local.", "CNAME"),
    nx("nosuch.prod.svc.cluster.local.", "CNAME"),
    nx("api.prod.svc.nosuch.cluster.local."),
    nodata("empty-ns.svc.cluster.local.", "SRV"),
    nx("empty-ns.svc.cluster.local.", "TXT"),
]

CASES = (
    NAMESPACES
    + ENDPOINT_POD_NAMES
    + NOENDPOINTS
    + IGNORE_EMPTY_SERVICE
    + TTL
    + PODS
    + FALLTHROUGH
    + LETTER_CASE
    + OWN_RECORDS
    + REVERSE
    + EXTERNAL_NAME
    + SERVICES
)


@pytest.mark.parametrize("case", CASES, ids=K8sCase.label)
async def test_rule(case: K8sCase) -> None:
    await case.run()


def test_case_labels_are_unique() -> None:
    labels = [c.label() for c in CASES]
    assert len(set(labels)) == len(labels), [x for x in labels if labels.count(x) > 1]
