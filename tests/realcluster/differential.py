"""The differential corpus and the comparison of two servers' replies.

The corpus is generated from the fixture cluster (objects.py) with a fixed random seed: every
worked example of spec §6.14, and for each object the query types of QTYPES; names in odd letter
case; absent namespaces and services; wrong port labels; random labels; reverse names of known
and unknown addresses; names outside the cluster (forwarded to the stub upstream).

Replies are compared on rcode, header flags, question, EDNS, and every section as a multiset of
records, ignoring the SOA serial and the order of records within a section, except that the
CNAMEs of the answer keep their order (a chain). When both replies are truncated (TC), which
records survived depends on loadbalance's shuffle: there each section is compared as the
multiset of (owner, class, type) of its records. TTLs are compared exactly, or within
`ttl_slack` seconds (runs with a cache, where a hit's TTL depends on when it is read).
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.reversename
import dns.rrset

from tests.realcluster.objects import Fixture

ZONE: Final = "cluster.local."
QTYPES: Final = ("A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "NS", "SOA", "MX", "ANY", "HTTPS")
SEED: Final = 20260
TIMEOUT_S: Final = 3.0

# Every worked example of spec §6.14 that runs against the reference Corefile (those that need
# another configuration -- `ignore empty_service`, `pods verified/disabled`, a server outside the
# cluster bound to 192.0.2.7, a query before the initial list -- are not in this corpus).
SPEC_EXAMPLES: Final = """
kubernetes.default.svc.cluster.local. A
kubernetes.default.svc.cluster.local. AAAA
_https._tcp.kubernetes.default.svc.cluster.local. SRV
api.prod.svc.cluster.local. A
api.prod.svc.cluster.local. AAAA
api.prod.svc.cluster.local. SRV
_grpc._tcp.api.prod.svc.cluster.local. SRV
_grpc._udp.api.prod.svc.cluster.local. SRV
kube-dns.kube-system.svc.cluster.local. SRV
_dns._udp.kube-dns.kube-system.svc.cluster.local. SRV
dns.udp.kube-dns.kube-system.svc.cluster.local. SRV
_https._tcp.kubernetes.default.svc.cluster.local. A
empty.prod.svc.cluster.local. A
10-244-1-20.api.prod.svc.cluster.local. A
10-244-2-21.api.prod.svc.cluster.local. A
web.prod.svc.cluster.local. A
web.prod.svc.cluster.local. AAAA
web-0.web.prod.svc.cluster.local. A
web-0.web.prod.svc.cluster.local. AAAA
10-244-3-12.web.prod.svc.cluster.local. A
fd00-10-244--c.web.prod.svc.cluster.local. AAAA
_http._tcp.web.prod.svc.cluster.local. SRV
lonely.prod.svc.cluster.local. A
bare.prod.svc.cluster.local. A
bare.prod.svc.cluster.local. SRV
nobody.web.prod.svc.cluster.local. A
a.b.c.web.prod.svc.cluster.local. A
db.prod.svc.cluster.local. A
db.prod.svc.cluster.local. CNAME
db.prod.svc.cluster.local. SRV
db.prod.svc.cluster.local. TXT
db.prod.svc.cluster.local. MX
db.prod.svc.cluster.local. HTTPS
alias.prod.svc.cluster.local. A
ipname.prod.svc.cluster.local. A
x.db.prod.svc.cluster.local. A
nosuch.prod.svc.cluster.local. A
api.nosuchns.svc.cluster.local. A
prod.svc.cluster.local. A
empty-ns.svc.cluster.local. A
nosuchns.svc.cluster.local. A
svc.cluster.local. A
pod.cluster.local. A
foo.cluster.local. A
*.prod.svc.cluster.local. A
*.svc.cluster.local. SRV
api.*.svc.cluster.local. A
google.com.prod.svc.cluster.local. A
nosuch.prod.svc.cluster.local. SOA
api.prod.svc.cluster.local. TXT
prod.svc.cluster.local. TXT
api.prod.svc.cluster.local. MX
api.prod.svc.cluster.local. ANY
api.prod.svc.cluster.local. PTR
nosuch.prod.svc.cluster.local. PTR
prod.svc.cluster.local. NS
foo.svc.cluster.local. NS
cluster.local. SOA
cluster.local. NS
ns.dns.cluster.local. A
cluster.local. A
cluster.local. AAAA
cluster.local. SRV
cluster.local. HINFO
cluster.local. TXT
cluster.local. AXFR
dns-version.cluster.local. TXT
dns-version.cluster.local. A
1.0.96.10.in-addr.arpa. PTR
10.1.244.10.in-addr.arpa. PTR
12.3.244.10.in-addr.arpa. PTR
20.1.244.10.in-addr.arpa. PTR
5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. PTR
30.1.244.10.in-addr.arpa. PTR
8.8.8.8.in-addr.arpa. PTR
0.96.10.in-addr.arpa. PTR
10-244-1-30.prod.pod.cluster.local. A
10-244-9-9.prod.pod.cluster.local. A
10-244-1-30.nosuchns.pod.cluster.local. A
ip-10-244-1-30.prod.pod.cluster.local. A
blah.prod.pod.cluster.local. A
blah.prod.pod.cluster.local. HINFO
10-244-1-30.prod.pod.cluster.local. AAAA
prod.pod.cluster.local. A
example.com. A
"""


@dataclass(frozen=True)
class Query:
    """One question of the corpus and where it came from."""

    qname: str
    qtype: str
    origin: str
    qclass: str = "IN"
    edns: bool = True

    def label(self) -> str:
        cls = "" if self.qclass == "IN" else f" {self.qclass}"
        return f"{self.qname}{cls} {self.qtype}{'' if self.edns else ' (no EDNS)'}"


def dashed(ip: str) -> str:
    """The address label of an IP (10-244-1-20, fd00-10-244--c)."""
    return ip.replace(".", "-").replace(":", "-")


def odd_case(name: str, rng: random.Random) -> str:
    """The name with letters in random case (at least one changed when it has letters)."""
    out = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)
    if out == name and any(c.isalpha() for c in name):
        i = next(i for i, c in enumerate(name) if c.isalpha())
        out = name[:i] + name[i].upper() + name[i + 1 :]
    return out


def build_corpus(fx: Fixture, seed: int = SEED) -> list[Query]:
    """Every query of the differential run, deduplicated, in a fixed order."""
    rng = random.Random(seed)
    out: list[Query] = []

    def add(name: str, types: tuple[str, ...] | list[str], origin: str, edns: bool = True) -> None:
        out.extend(Query(name, t, origin, edns=edns) for t in types)

    spec = [line.split() for line in SPEC_EXAMPLES.strip().splitlines()]
    for name, qtype in spec:
        add(name, [qtype], "spec §6.14")
        add(name, [qtype], "spec §6.14, no EDNS", edns=False)
        add(odd_case(name, rng), [qtype], "spec §6.14, odd case")
    add(ZONE.upper(), ["SOA", "NS", "A"], "odd case")

    ips: set[str] = set()
    for s in fx.services:
        base = f"{s.name}.{s.ns}.svc.{ZONE}"
        add(base, QTYPES, f"{s.kind} {s.ns}/{s.name}")
        add(base, ["A", "AAAA", "SRV", "ANY"], f"{s.kind} {s.ns}/{s.name}, no EDNS", edns=False)
        add(odd_case(base, rng), ["A", "AAAA", "SRV", "CNAME"], "odd case")
        for p in s.ports:
            proto = p.protocol.lower()
            if p.name:
                add(f"_{p.name}._{proto}.{base}", QTYPES, f"port of {s.ns}/{s.name}")
                add(f"{p.name}.{proto}.{base}", ["SRV", "A"], "port labels without underscores")
                add(f"_{p.name}._sctp.{base}", ["SRV"], "wrong protocol label")
                add(f"_{p.name}.{base}", ["SRV", "A"], "port label without protocol")
                add(odd_case(f"_{p.name}._{proto}.{base}", rng), ["SRV"], "odd case")
            other = "udp" if proto == "tcp" else "tcp"
            add(f"_{p.name or 'x'}._{other}.{base}", ["SRV"], "wrong protocol")
        add(f"_nope._tcp.{base}", ["SRV", "A"], "wrong port label")
        add(f"_*._tcp.{base}", ["SRV"], "wildcard port")
        add(f"nosuch.{base}", ["A", "AAAA", "SRV"], "absent endpoint")
        add(f"{s.name}.nosuchns.svc.{ZONE}", ["A", "SRV", "TXT"], "absent namespace")
        for e in s.endpoints:
            ips.add(e.ip)
            add(f"{e.hostname or dashed(e.ip)}.{base}", QTYPES, f"endpoint of {s.ns}/{s.name}")
        ips.update(s.cluster_ips)
    for ns in fx.namespaces:
        add(f"{ns}.svc.{ZONE}", ["A", "SRV", "TXT", "NS", "SOA"], f"namespace {ns}")
        add(f"nosuch.{ns}.svc.{ZONE}", ["A", "AAAA", "SRV", "SOA", "PTR"], "absent service")
        add(f"{ns}.pod.{ZONE}", ["A", "AAAA"], f"pod namespace {ns}")
    for pod in fx.pods:
        ips.add(pod.ip)
        add(f"{dashed(pod.ip)}.{pod.ns}.pod.{ZONE}", QTYPES, f"pod {pod.ns}/{pod.name}")
        add(odd_case(f"{dashed(pod.ip)}.{pod.ns}.pod.{ZONE}", rng), ["A"], "odd case")

    unknown = ["10.96.99.99", "10.244.9.9", "192.0.2.1", "fd00:10:96::99", "fd00:10:244::99"]
    unknown.append("2001:db8::1")
    for ip in sorted(ips) + unknown:
        rev = dns.reversename.from_address(ip).to_text()
        add(rev, ["PTR"], "reverse of a known IP" if ip in ips else "reverse of an unknown IP")
        add(odd_case(rev, rng), ["PTR"], "odd case")
    for v6 in ("fd00:10:244::c", "fd00:10:96::5"):
        add(f"{dashed(v6)}.prod.pod.{ZONE}", QTYPES, "IPv6 pod name")
    for apex in ("in-addr.arpa.", "ip6.arpa.", "10.in-addr.arpa.", "96.10.in-addr.arpa."):
        add(apex, ["SOA", "NS", "PTR"], "reverse zone apex")
    add(f"ns.dns.{ZONE}", ["A", "AAAA", "TXT"], "ns.dns")
    add(f"dns.{ZONE}", ["A", "TXT"], "dns")

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    for _ in range(12):
        label = rng.choice("abcdefghijklmnopqrstuvwxyz") + "".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 14))
        ).rstrip("-")
        for name in (
            f"{label}.{ZONE}",
            f"{label}.svc.{ZONE}",
            f"{label}.prod.svc.{ZONE}",
            f"{label}.web.prod.svc.{ZONE}",
            f"{label}.prod.pod.{ZONE}",
            f"{label}.example.com.",
        ):
            add(name, [rng.choice(QTYPES)], "random label")
    add("example.com.", ["A", "AAAA", "MX", "TXT"], "upstream")
    add("db.example.com.", ["A", "AAAA"], "upstream")
    add("nx.example.com.", ["A"], "upstream")
    # Non-IN classes (documented deviation D7).
    out.append(Query(f"kubernetes.default.svc.{ZONE}", "A", "class CH", "CH"))
    out.append(Query("example.com.", "A", "class CH", "CH"))

    seen: set[tuple[str, str, str, bool]] = set()
    unique: list[Query] = []
    for q in out:
        key = (q.qname, q.qtype, q.qclass, q.edns)
        if key not in seen:
            seen.add(key)
            unique.append(q)
    return unique


def query_wire(q: Query, qid: int) -> bytes:
    """The query as `dig` sends it: RD, EDNS0 with a 1232-byte payload (unless `q.edns` is
    false), no cookie."""
    msg = dns.message.make_query(
        dns.name.from_text(q.qname),
        dns.rdatatype.from_text(q.qtype),
        dns.rdataclass.from_text(q.qclass),
        use_edns=0 if q.edns else False,
        payload=1232,
    )
    msg.id = qid
    return msg.to_wire()


def ask(port: int, wire: bytes, transport: str) -> bytes | None:
    """Send one query to 127.0.0.1:port; the reply's bytes, or None on timeout."""
    try:
        if transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(TIMEOUT_S)
                s.sendto(wire, ("127.0.0.1", port))
                return s.recv(65535)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as s:
            s.sendall(struct.pack("!H", len(wire)) + wire)
            head = _recv_exact(s, 2)
            return _recv_exact(s, struct.unpack("!H", head)[0])
    except (TimeoutError, ConnectionError):
        return None


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


@dataclass(frozen=True)
class Record:
    """One resource record: comparable text without the TTL, and the TTL."""

    key: str
    ttl: int


@dataclass(frozen=True)
class Reply:
    """A reply reduced to what is compared."""

    outcome: str  # "ok", "timeout" or "unparseable: ..."
    id: int = -1
    rcode: str = ""
    opcode: str = ""
    flags: tuple[str, ...] = ()
    question: tuple[str, ...] = ()
    cname_chain: tuple[Record, ...] = ()
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    edns: str = ""

    def text(self) -> str:
        if self.outcome != "ok":
            return self.outcome
        lines = [f"{self.rcode} flags:{' '.join(self.flags)} id:{self.id} {self.edns}"]
        for tag, recs in (
            ("AN", self.cname_chain + self.answer),
            ("NS", self.authority),
            ("AR", self.additional),
        ):
            lines.extend(f"  {tag} {_show(r)}" for r in recs)
        return "\n".join(lines)


def _shape(r: Record) -> str:
    owner, cls, rdtype, _ = r.key.split(" ", 3)
    return f"{owner} {cls} {rdtype}"


def _show(r: Record) -> str:
    owner, rest = r.key.split(" ", 1)
    return f"{owner} {r.ttl} {rest}"


def _records(section: list[dns.rrset.RRset]) -> Iterator[tuple[str, Record]]:
    for rrset in section:
        for rd in rrset:
            rdtype = dns.rdatatype.to_text(rrset.rdtype)
            text = rd.to_text()
            if isinstance(rd, dns.rdtypes.ANY.SOA.SOA):  # the serial is not compared
                text = f"{rd.mname} {rd.rname} <serial> {rd.refresh} {rd.retry} {rd.expire}"
                text += f" {rd.minimum}"
            cls = dns.rdataclass.to_text(rrset.rdclass)
            key = f"{rrset.name.to_text()} {cls} {rdtype} {text}"
            yield rdtype, Record(key, rrset.ttl)


def _sorted(recs: list[Record]) -> tuple[Record, ...]:
    return tuple(sorted(recs, key=lambda r: (r.key, r.ttl)))


def reduce(wire: bytes | None) -> Reply:
    """Parse a reply into the compared form."""
    if wire is None:
        return Reply("timeout")
    try:
        msg = dns.message.from_wire(wire, one_rr_per_rrset=True)
    except dns.exception.DNSException as exc:
        return Reply(f"unparseable: {type(exc).__name__}: {exc}")
    answer = list(_records(msg.answer))
    chain = tuple(r for t, r in answer if t == "CNAME")
    edns = "no-edns"
    if msg.edns >= 0:
        opts = ",".join(sorted(o.to_text() for o in msg.options))
        eflags = dns.flags.edns_to_text(msg.ednsflags) or "-"
        edns = f"edns{msg.edns} udp={msg.payload} flags={eflags} opts=[{opts}]"
    return Reply(
        "ok",
        id=msg.id,
        rcode=dns.rcode.to_text(msg.rcode()),
        opcode=dns.opcode.to_text(msg.opcode()),
        flags=tuple(sorted(dns.flags.to_text(msg.flags).lower().split())),
        question=tuple(
            f"{r.name.to_text()} {dns.rdataclass.to_text(r.rdclass)} "
            f"{dns.rdatatype.to_text(r.rdtype)}"
            for r in msg.question
        ),
        cname_chain=chain,
        answer=_sorted([r for t, r in answer if t != "CNAME"]),
        authority=_sorted([r for _, r in _records(msg.authority)]),
        additional=_sorted([r for _, r in _records(msg.additional)]),
        edns=edns,
    )


def differences(a: Reply, b: Reply, ttl_slack: int = 0) -> list[str]:
    """What differs between two replies (empty: identical under the comparison rules)."""
    if a.outcome != "ok" or b.outcome != "ok":
        return [] if a.outcome == b.outcome else [f"outcome: {a.outcome} vs {b.outcome}"]
    out = []
    for field in ("id", "rcode", "opcode", "flags", "question", "edns"):
        if getattr(a, field) != getattr(b, field):
            out.append(f"{field}: {getattr(a, field)} vs {getattr(b, field)}")
    for section in ("cname_chain", "answer", "authority", "additional"):
        ra: tuple[Record, ...] = getattr(a, section)
        rb: tuple[Record, ...] = getattr(b, section)
        if "tc" in a.flags and "tc" in b.flags:
            # Which records a truncated reply keeps depends on loadbalance's shuffle: compare
            # how many, and the owner and type of each.
            if sorted(_shape(r) for r in ra) != sorted(_shape(r) for r in rb):
                out.append(f"{section}: truncated differently")
            continue
        if [r.key for r in ra] != [r.key for r in rb]:
            out.append(f"{section}: records differ")
        elif any(abs(x.ttl - y.ttl) > ttl_slack for x, y in zip(ra, rb, strict=True)):
            out.append(f"{section}: TTLs differ")
    return out
