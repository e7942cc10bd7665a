"""The real server answering the reference cluster from YAML (spec §6.14), over UDP, TCP and dig.

One server serves the module's table: the kubeadm `kubernetes` line on `.:0` (bound to
loopback) with `from_yaml` on the reference cluster fixture, `hosts` standing in for upstream
(`db.example.com`, which the ExternalName `db.prod` is chased to) and `whoami` as the next
plugin that reverse names fall through to. There is no `cache`, so TTLs are those the plugin
writes (spec §6.14 notes "without a cache"). Examples that depend on the server's own
non-loopback address (apex NS, `ns.dns`) are in test_own_address_netns.py.

The last test edits a copy of the YAML file and waits, bounded, for the new service to answer.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
import pytest_asyncio

from tests.dnstest import Case, dig, running_server
from tests.e2e.support import (
    REFERENCE_YAML,
    check,
    eventually,
    parse_dig,
    query,
    records,
    soa,
    soa_serial,
    with_serial,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

AA = "qr aa rd"
SOA = soa()
UPSTREAM_HOSTS = "192.0.2.50 db.example.com\n"


def corefile(yaml_path: Path, hosts_path: Path) -> str:
    return f"""\
.:0 {{
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        from_yaml {yaml_path}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    hosts {hosts_path} example.com {{
        ttl 300
    }}
    whoami
}}
"""


def ok(qname: str, qtype: str, answer: list[str], extra: list[str] | None = None) -> Case:
    return Case(qname=qname, qtype=qtype, answer=answer, extra=extra or [], flags=AA)


def nodata(qname: str, qtype: str = "A", soa_line: str = SOA) -> Case:
    return Case(qname=qname, qtype=qtype, ns=[soa_line], flags=AA)


def nx(qname: str, qtype: str = "A", soa_line: str = SOA) -> Case:
    return Case(qname=qname, qtype=qtype, rcode="NXDOMAIN", ns=[soa_line], flags=AA)


def rev(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


KUBERNETES = "kubernetes.default.svc.cluster.local."
API = "api.prod.svc.cluster.local."
KUBE_DNS = "kube-dns.kube-system.svc.cluster.local."
WEB = "web.prod.svc.cluster.local."
API_GLUE = [f"{API} 30 IN A 10.96.5.5", f"{API} 30 IN AAAA fd00:10:96::5"]
WEB_GLUE = [
    f"web-0.{WEB} 30 IN A 10.244.1.10",
    f"web-1.{WEB} 30 IN A 10.244.2.11",
    f"10-244-3-12.{WEB} 30 IN A 10.244.3.12",
    f"fd00-10-244--c.{WEB} 30 IN AAAA fd00:10:244::c",
]
MIXED_ZONE = "ClUsTeR.lOcAl."

CASES: list[Case] = [
    # ClusterIP services, SRV with glue
    ok(KUBERNETES, "A", [f"{KUBERNETES} 30 IN A 10.96.0.1"]),
    nodata(KUBERNETES, "AAAA"),
    ok(
        f"_https._tcp.{KUBERNETES}",
        "SRV",
        [f"_https._tcp.{KUBERNETES} 30 IN SRV 0 100 443 {KUBERNETES}"],
        [f"{KUBERNETES} 30 IN A 10.96.0.1"],
    ),
    ok(API, "A", [f"{API} 30 IN A 10.96.5.5"]),
    ok(API, "AAAA", [f"{API} 30 IN AAAA fd00:10:96::5"]),
    ok(
        API,
        "SRV",
        [f"{API} 30 IN SRV 0 25 80 {API}", f"{API} 30 IN SRV 0 25 9090 {API}"],
        API_GLUE,
    ),
    ok(f"_grpc._tcp.{API}", "SRV", [f"_grpc._tcp.{API} 30 IN SRV 0 50 9090 {API}"], API_GLUE),
    nx(f"_grpc._udp.{API}", "SRV"),
    ok(
        KUBE_DNS,
        "SRV",
        [f"{KUBE_DNS} 30 IN SRV 0 33 53 {KUBE_DNS}", f"{KUBE_DNS} 30 IN SRV 0 33 9153 {KUBE_DNS}"],
        [f"{KUBE_DNS} 30 IN A 10.96.0.10"],
    ),
    ok(
        f"dns.udp.{KUBE_DNS}",
        "SRV",
        [f"dns.udp.{KUBE_DNS} 30 IN SRV 0 100 53 {KUBE_DNS}"],
        [f"{KUBE_DNS} 30 IN A 10.96.0.10"],
    ),
    ok(f"_https._tcp.{KUBERNETES}", "A", [f"_https._tcp.{KUBERNETES} 30 IN A 10.96.0.1"]),
    ok("empty.prod.svc.cluster.local.", "A", ["empty.prod.svc.cluster.local. 30 IN A 10.96.7.7"]),
    # endpoint names under a ClusterIP service
    ok(f"10-244-1-20.{API}", "A", [f"10-244-1-20.{API} 30 IN A 10.244.1.20"]),
    nx(f"10-244-2-21.{API}"),
    # headless services
    ok(
        WEB,
        "A",
        [f"{WEB} 30 IN A 10.244.1.10", f"{WEB} 30 IN A 10.244.2.11", f"{WEB} 30 IN A 10.244.3.12"],
    ),
    ok(WEB, "AAAA", [f"{WEB} 30 IN AAAA fd00:10:244::c"]),
    ok(f"web-0.{WEB}", "A", [f"web-0.{WEB} 30 IN A 10.244.1.10"]),
    nodata(f"web-0.{WEB}", "AAAA"),
    ok(f"10-244-3-12.{WEB}", "A", [f"10-244-3-12.{WEB} 30 IN A 10.244.3.12"]),
    ok(f"fd00-10-244--c.{WEB}", "AAAA", [f"fd00-10-244--c.{WEB} 30 IN AAAA fd00:10:244::c"]),
    ok(
        f"_http._tcp.{WEB}",
        "SRV",
        [
            f"_http._tcp.{WEB} 30 IN SRV 0 25 80 web-0.{WEB}",
            f"_http._tcp.{WEB} 30 IN SRV 0 25 80 web-1.{WEB}",
            f"_http._tcp.{WEB} 30 IN SRV 0 25 80 10-244-3-12.{WEB}",
            f"_http._tcp.{WEB} 30 IN SRV 0 25 80 fd00-10-244--c.{WEB}",
        ],
        WEB_GLUE,
    ),
    nx("lonely.prod.svc.cluster.local."),
    ok("bare.prod.svc.cluster.local.", "A", ["bare.prod.svc.cluster.local. 30 IN A 10.244.4.40"]),
    nodata("bare.prod.svc.cluster.local.", "SRV"),
    nx(f"nobody.{WEB}"),
    nx(f"a.b.c.{WEB}"),
    # ExternalName: outside target chased through the chain (hosts says TTL 300, no cache)
    ok(
        "db.prod.svc.cluster.local.",
        "A",
        [
            "db.prod.svc.cluster.local. 30 IN CNAME db.example.com.",
            "db.example.com. 300 IN A 192.0.2.50",
        ],
    ),
    ok(
        "db.prod.svc.cluster.local.",
        "CNAME",
        ["db.prod.svc.cluster.local. 30 IN CNAME db.example.com."],
    ),
    nodata("db.prod.svc.cluster.local.", "SRV"),
    nodata("db.prod.svc.cluster.local.", "TXT"),
    ok(
        "alias.prod.svc.cluster.local.",
        "A",
        [f"alias.prod.svc.cluster.local. 30 IN CNAME {API}", f"{API} 30 IN A 10.96.5.5"],
    ),
    nx("ipname.prod.svc.cluster.local."),
    nx("x.db.prod.svc.cluster.local."),
    # namespaces, missing names, NXDOMAIN vs NODATA
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
    nx("google.com.prod.svc.cluster.local."),
    nodata("nosuch.prod.svc.cluster.local.", "SOA"),
    nodata(API, "TXT"),
    nx("prod.svc.cluster.local.", "TXT"),
    nodata(API, "MX"),
    nodata(API, "PTR"),
    nx("nosuch.prod.svc.cluster.local.", "PTR"),
    nodata("prod.svc.cluster.local.", "NS"),
    nx("foo.svc.cluster.local.", "NS"),
    # apex and special names
    ok("cluster.local.", "SOA", [SOA]),
    nodata("cluster.local.", "A"),
    nodata("cluster.local.", "SRV"),
    nx("cluster.local.", "TXT"),
    Case(qname="cluster.local.", qtype="AXFR", rcode="REFUSED", flags="qr rd"),
    ok("dns-version.cluster.local.", "TXT", ['dns-version.cluster.local. 28800 IN TXT "1.1.0"']),
    nx("dns-version.cluster.local.", "A"),
    ok("in-addr.arpa.", "SOA", [soa("in-addr.arpa.")]),
    # reverse
    ok(rev("10.96.0.1"), "PTR", [f"{rev('10.96.0.1')} 30 IN PTR {KUBERNETES}"]),
    ok(rev("10.244.1.10"), "PTR", [f"{rev('10.244.1.10')} 30 IN PTR web-0.{WEB}"]),
    ok(rev("10.244.3.12"), "PTR", [f"{rev('10.244.3.12')} 30 IN PTR 10-244-3-12.{WEB}"]),
    ok(rev("10.244.1.20"), "PTR", [f"{rev('10.244.1.20')} 30 IN PTR 10-244-1-20.{API}"]),
    ok(rev("fd00:10:96::5"), "PTR", [f"{rev('fd00:10:96::5')} 30 IN PTR {API}"]),
    ok(rev("fd00:10:244::c"), "PTR", [f"{rev('fd00:10:244::c')} 30 IN PTR fd00-10-244--c.{WEB}"]),
    # pods insecure
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
    # letter case: owners as asked, zone part of SOA and SRV targets in the query's case
    ok(
        "KuBeRnEtEs.DeFaUlT.sVc.ClUsTeR.lOcAl.",
        "A",
        ["KuBeRnEtEs.DeFaUlT.sVc.ClUsTeR.lOcAl. 30 IN A 10.96.0.1"],
    ),
    nx(f"x.prod.svc.{MIXED_ZONE}", soa_line=soa(MIXED_ZONE)),
    ok(
        f"_HtTpS._TcP.KuBeRnEtEs.DeFaUlT.SvC.{MIXED_ZONE}",
        "SRV",
        [
            f"_HtTpS._TcP.KuBeRnEtEs.DeFaUlT.SvC.{MIXED_ZONE} 30 IN SRV 0 100 443 "
            f"kubernetes.default.svc.{MIXED_ZONE}"
        ],
        [f"kubernetes.default.svc.{MIXED_ZONE} 30 IN A 10.96.0.1"],
    ),
    ok(MIXED_ZONE, "SOA", [soa(MIXED_ZONE)]),
]


@dataclass(frozen=True)
class Served:
    port: int
    serial: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    tmp = tmp_path_factory.mktemp("k8s-yaml")
    hosts = tmp / "upstream.hosts"
    hosts.write_text(UPSTREAM_HOSTS)
    async with running_server(corefile(REFERENCE_YAML, hosts)) as server:
        port = server.port()
        yield Served(port, await soa_serial(port))


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=Case.id)
async def test_reference_example(served: Served, case: Case, proto: str) -> None:
    await check(served.port, with_serial(case, served.serial), proto=proto)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
async def test_reverse_name_unknown_to_the_cluster_falls_through(
    served: Served, proto: str
) -> None:
    """`30.1.244.10.in-addr.arpa` (a pod behind no service) goes on to the next plugin."""
    qname = rev("10.244.1.30")
    reply = await query(served.port, qname, "PTR", proto=proto)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    # whoami's answer: the client's address in the additional section
    extra = {
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for rrset in reply.additional
        for rd in rrset
    }
    assert (qname, "A", "127.0.0.1") in extra, extra


async def test_dig_headless_srv(served: Served) -> None:
    out = parse_dig(await dig(served.port, f"_http._tcp.{WEB}", "SRV"))
    assert out.status == "NOERROR" and out.flags == {"qr", "aa", "rd"}
    assert out.answer == records(
        f"_http._tcp.{WEB} 30 IN SRV 0 25 80 web-0.{WEB}",
        f"_http._tcp.{WEB} 30 IN SRV 0 25 80 web-1.{WEB}",
        f"_http._tcp.{WEB} 30 IN SRV 0 25 80 10-244-3-12.{WEB}",
        f"_http._tcp.{WEB} 30 IN SRV 0 25 80 fd00-10-244--c.{WEB}",
    )
    assert out.additional == records(*WEB_GLUE)


async def test_dig_nxdomain_over_tcp_carries_the_soa(served: Served) -> None:
    out = parse_dig(await dig(served.port, "+tcp", "nosuch.prod.svc.cluster.local", "A"))
    assert out.status == "NXDOMAIN" and out.flags == {"qr", "aa", "rd"}
    assert out.answer == ()
    assert out.authority == records(SOA)


async def test_dig_reverse_and_external_name(served: Served) -> None:
    out = parse_dig(await dig(served.port, "-x", "10.244.1.10"))
    assert out.status == "NOERROR"
    assert out.answer == records(f"{rev('10.244.1.10')} 30 IN PTR web-0.{WEB}")
    out = parse_dig(await dig(served.port, "alias.prod.svc.cluster.local"))
    assert out.status == "NOERROR"
    assert out.answer == records(
        f"alias.prod.svc.cluster.local. 30 IN CNAME {API}", f"{API} 30 IN A 10.96.5.5"
    )
    out = parse_dig(await dig(served.port, "dns-version.cluster.local", "TXT"))
    assert out.answer == records('dns-version.cluster.local. 28800 IN TXT "1.1.0"')


NEW_SERVICE = """\
---
apiVersion: v1
kind: Service
metadata:
  name: added
  namespace: prod
spec:
  type: ClusterIP
  clusterIP: 10.96.9.9
  clusterIPs: [10.96.9.9]
  ports:
    - name: http
      port: 80
      protocol: TCP
"""


async def test_edited_yaml_file_is_picked_up(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    shutil.copyfile(REFERENCE_YAML, cluster)
    hosts = tmp_path / "upstream.hosts"
    hosts.write_text(UPSTREAM_HOSTS)
    name = "added.prod.svc.cluster.local."
    async with running_server(corefile(cluster, hosts)) as server:
        port = server.port()
        before = await query(port, name)
        assert before.rcode() == dns.rcode.NXDOMAIN
        old_serial = await soa_serial(port)

        with cluster.open("a") as f:
            f.write(NEW_SERVICE)
        reply = await eventually(
            lambda: query(port, name),
            lambda r: r.rcode() == dns.rcode.NOERROR and bool(r.answer),
            what=f"{name} answering after the YAML edit",
        )
        assert [rr.to_text() for rr in reply.answer] == [f"{name} 30 IN A 10.96.9.9"]
        assert reply.answer[0].rdtype == dns.rdatatype.A
        assert await soa_serial(port) >= old_serial
        # the rest of the cluster is still there
        await check(port, ok(API, "A", [f"{API} 30 IN A 10.96.5.5"]))
