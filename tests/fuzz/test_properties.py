"""Property tests where structure matters more than bytes (hypothesis; atheris mutates bytes).

Well-formed messages built by dnspython or dnslib, with random names, types, flags, EDNS
options, records and TTLs, go through the same harness functions as the fuzzers (so the same
properties hold), plus a decoder-against-dnspython round trip. Most names use letters, digits,
`-` and `_` (so they reach the cluster's names); one test takes labels of any bytes (dots,
backslashes, zone-file specials, non-ASCII), which must keep their bytes through the text form.
"""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dnslib import EDNS0, QTYPE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, EDNSOption
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.wire import walk
from fuzz import harness
from fuzz.seeds import cluster_names

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

label = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,20}", fullmatch=True)
names = st.lists(label, min_size=1, max_size=6).map(lambda ls: ".".join(ls) + ".")
qtypes = st.sampled_from(
    ["A", "AAAA", "SRV", "PTR", "TXT", "MX", "NS", "SOA", "CNAME", "ANY", "CAA", "HINFO", "DS"]
)
options = st.lists(
    st.tuples(st.sampled_from([3, 5, 8, 11, 12, 15, 100, 65001]), st.binary(max_size=16)).filter(
        lambda o: o[0] != 8 or len(o[1]) >= 4
    ),
    max_size=3,
)


def query(
    name: str,
    qtype: str,
    *,
    qid: int,
    rd: bool,
    cd: bool,
    ad: bool,
    edns: int | None,
    do: bool,
    opts: list[tuple[int, bytes]],
) -> bytes:
    q = DNSRecord(DNSHeader(id=qid, rd=int(rd)), q=DNSQuestion(name, int(getattr(QTYPE, qtype))))
    q.header.cd, q.header.ad = int(cd), int(ad)
    if edns is not None:
        q.add_ar(
            EDNS0(udp_len=edns, flags="do" if do else "", opts=[EDNSOption(c, d) for c, d in opts])
        )
    return bytes(q.pack())


queries = st.builds(
    query,
    names | st.sampled_from(cluster_names()),
    qtypes,
    qid=st.integers(0, 0xFFFF),
    rd=st.booleans(),
    cd=st.booleans(),
    ad=st.booleans(),
    edns=st.none() | st.integers(0, 0xFFFF),
    do=st.booleans(),
    opts=options,
)


@SETTINGS
@given(data=queries)
def test_well_formed_queries_keep_every_wire_property(data: bytes) -> None:
    harness.wire(data)


@SETTINGS
@given(data=queries)
def test_well_formed_queries_through_the_request_handler(data: bytes) -> None:
    with harness.quiet():
        harness.responder(data)


odd_labels = st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=5)
zones = st.sampled_from([(b"example", b"org"), (b"example", b"net"), (b"cluster", b"local"), ()])


@SETTINGS
@given(labels=odd_labels, zone=zones, qtype=st.sampled_from(["A", "AAAA", "PTR", "TXT"]))
def test_labels_of_any_bytes_keep_their_bytes(
    labels: list[bytes], zone: tuple[bytes, ...], qtype: str
) -> None:
    name = DNSLabel((*labels, *zone))
    data = bytes(
        DNSRecord(DNSHeader(id=7, rd=1), q=DNSQuestion(name, int(getattr(QTYPE, qtype)))).pack()
    )
    harness.names(data[12:-4])
    with harness.quiet():
        try:
            harness.responder(data)
        except harness.Violation as exc:
            if exc.bug not in harness.KNOWN:  # an open bug has its strict xfail elsewhere
                raise


def mixed_case(name: str, mask: int) -> str:
    return "".join(c.upper() if mask >> (i % 60) & 1 else c for i, c in enumerate(name))


@SETTINGS
@given(
    name=st.sampled_from(cluster_names()),
    mask=st.integers(0, 2**60 - 1),
    qtype=qtypes,
    rd=st.booleans(),
    cd=st.booleans(),
    edns=st.none() | st.sampled_from([0, 512, 1232, 4096, 65535]),
    do=st.booleans(),
    opts=options,
)
def test_fast_path_replays_what_the_full_chain_answers(
    name: str,
    mask: int,
    qtype: str,
    rd: bool,
    cd: bool,
    edns: int | None,
    do: bool,
    opts: list[tuple[int, bytes]],
) -> None:
    data = query(
        mixed_case(name, mask), qtype, qid=1, rd=rd, cd=cd, ad=False, edns=edns, do=do, opts=opts
    )
    with harness.quiet():
        harness.fastpath(data)


# -- hostile but well-formed upstream replies ------------------------------------------------------
RDATA = {
    "A": "192.0.2.{n}",
    "AAAA": "2001:db8::{n}",
    "CNAME": "target{n}.example.",
    "MX": "{n} mail.example.",
    "TXT": '"t{n}"',
    "SRV": "0 {n} 443 srv.example.",
    "NS": "ns{n}.example.",
    "PTR": "host{n}.example.",
    "SOA": "ns.example. hostmaster.example. {n} 7200 3600 1209600 300",
}
records = st.lists(
    st.tuples(
        st.sampled_from(["Db.Example.com.", "db.example.com.", "other.example."]),
        st.integers(0, 2**32 - 1),
        st.sampled_from(sorted(RDATA)),
        st.integers(1, 200),
    ),
    max_size=12,
)


@SETTINGS
@given(
    selector=st.integers(0, 255),
    answer=records,
    authority=records,
    rcode=st.integers(0, 5),
    tc=st.booleans(),
    aa=st.booleans(),
)
def test_well_formed_upstream_replies_reach_the_client_sound(
    selector: int,
    answer: list[tuple[str, int, str, int]],
    authority: list[tuple[str, int, str, int]],
    rcode: int,
    tc: bool,
    aa: bool,
) -> None:
    # Built around the question the harness asks (and then cut out again), so that compression
    # pointers still point at the right bytes once the harness puts the question back.
    header = DNSHeader(id=0, qr=1, ra=1, rd=1, aa=int(aa), tc=int(tc), rcode=rcode)
    reply = DNSRecord(header, q=DNSQuestion(harness.CLIENT_NAME))
    for owner, ttl, rtype, n in answer:
        reply.add_answer(*RR.fromZone(f"{owner} {ttl} IN {rtype} {RDATA[rtype].format(n=n)}"))
    for owner, ttl, rtype, n in authority:
        reply.add_auth(*RR.fromZone(f"{owner} {ttl} IN {rtype} {RDATA[rtype].format(n=n)}"))
    wire = bytes(reply.pack())
    question_end = 12 + len(harness.CLIENT_NAME) + 1 + 4
    with harness.quiet():
        harness.upstream(bytes([selector]) + wire[:12] + wire[question_end:])


# -- the decoder against dnspython -------------------------------------------------------------
TYPES = ["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "PTR", "SOA", "CAA", "HINFO", "NAPTR"]
TEXT = {
    "A": "192.0.2.1",
    "AAAA": "2001:db8::1",
    "CNAME": "c.example.",
    "MX": "10 m.example.",
    "TXT": '"hello" "world"',
    "SRV": "0 5 80 s.example.",
    "NS": "n.example.",
    "PTR": "p.example.",
    "SOA": "ns.example. host.example. 1 2 3 4 5",
    "CAA": '0 issue "ca.example"',
    "HINFO": '"cpu" "os"',
    "NAPTR": '100 10 "S" "SIP+D2U" "" _sip._udp.example.',
}


@SETTINGS
@given(
    qname=names,
    sections=st.lists(st.tuples(st.integers(0, 2), names, st.sampled_from(TYPES)), max_size=8),
    compress=st.booleans(),
)
def test_decoder_reads_what_dnspython_writes(
    qname: str, sections: list[tuple[int, str, str]], compress: bool
) -> None:
    msg = dns.message.make_query(qname, "A")
    msg.flags |= dns.flags.QR
    targets = (msg.answer, msg.authority, msg.additional)
    for where, owner, rtype in sections:
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), TEXT[rtype])
        rrset = dns.rrset.from_rdata(owner, 300, rd)
        targets[where].append(rrset)
    wire = msg.to_wire() if compress else msg.to_wire(max_size=65535)
    walk(wire)
    harness.decoder_agrees(wire)
    ours = parse_message(wire)
    theirs = dns.message.from_wire(wire, one_rr_per_rrset=True)
    for got, want in ((ours.rr, theirs.answer), (ours.auth, theirs.authority)):
        assert [(str(r.rname).lower(), int(r.rtype)) for r in got] == [
            (rrset.name.to_text().lower(), int(rrset.rdtype)) for rrset in want
        ]
