"""Reply classification shared by cache and log (CoreDNS response.Typify and friends)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from dnslib import EDNS0, RR, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.response import (
    MINIMAL_TTL_S,
    ResponseClass,
    ResponseType,
    answers_question,
    cache_type,
    class_of,
    classify,
    full_rcode,
    has_soa,
    is_nodata,
    minimal_ttl,
)

SOA = "example.org. 300 IN SOA ns.example.org. hostmaster.example.org. 1 7200 1800 86400 60"
NS = "example.org. 3600 IN NS ns1.example.org."
A = "www.example.org. 60 IN A 192.0.2.1"
NOW = 1_700_000_000  # 2023-11-14
SIG_VALID = (
    "www.example.org. 60 IN RRSIG A 8 3 60 20300101000000 20200101000000 12345 example.org. AAAA"
)
SIG_EXPIRED = (
    "www.example.org. 60 IN RRSIG A 8 3 60 20210101000000 20200101000000 12345 example.org. AAAA"
)


def reply(
    qname: str = "www.example.org.",
    qtype: str = "A",
    *,
    rcode: int = rc.NOERROR,
    answer: Sequence[str] = (),
    ns: Sequence[str] = (),
    extra: Sequence[str] = (),
    opcode: int = 0,
    do: bool = False,
    ext_rcode: int = 0,
    qclass: str = "IN",
) -> DNSRecord:
    msg = DNSRecord.question(qname, qtype, qclass).reply()
    msg.header.rcode = rcode
    msg.header.opcode = opcode
    for line in answer:
        msg.add_answer(*RR.fromZone(line))
    for line in ns:
        msg.add_auth(*RR.fromZone(line))
    for line in extra:
        msg.add_ar(*RR.fromZone(line))
    if do or ext_rcode:
        msg.add_ar(EDNS0(flags="do" if do else "", ext_rcode=ext_rcode, udp_len=1232))
    return msg


@dataclass(frozen=True, kw_only=True)
class Typed:
    name: str
    msg: DNSRecord
    want: ResponseType


T = ResponseType
TYPES = [
    Typed(name="answer", msg=reply(answer=[A]), want=T.NOERROR),
    Typed(name="answer with soa", msg=reply(answer=[A], ns=[SOA]), want=T.NOERROR),
    Typed(name="nxdomain with answer", msg=reply(rcode=rc.NXDOMAIN, answer=[A]), want=T.OTHERERROR),
    Typed(name="nodata", msg=reply(ns=[SOA]), want=T.NODATA),
    Typed(name="nxdomain with soa", msg=reply(rcode=rc.NXDOMAIN, ns=[SOA]), want=T.NXDOMAIN),
    Typed(name="nxdomain bare", msg=reply(rcode=rc.NXDOMAIN), want=T.NXDOMAIN),
    Typed(name="servfail", msg=reply(rcode=rc.SERVFAIL), want=T.SERVERERROR),
    Typed(name="notimp", msg=reply(rcode=rc.NOTIMP), want=T.SERVERERROR),
    Typed(name="servfail with soa", msg=reply(rcode=rc.SERVFAIL, ns=[SOA]), want=T.SERVERERROR),
    Typed(name="referral", msg=reply(ns=[NS]), want=T.DELEGATION),
    Typed(name="referral and soa", msg=reply(ns=[NS, SOA]), want=T.NODATA),
    Typed(name="empty", msg=reply(), want=T.NOERROR),
    Typed(name="additional only", msg=reply(extra=[A]), want=T.NOERROR),
    Typed(name="refused", msg=reply(rcode=rc.REFUSED), want=T.OTHERERROR),
    Typed(name="formerr", msg=reply(rcode=rc.FORMERR), want=T.OTHERERROR),
    Typed(name="refused with ns", msg=reply(rcode=rc.REFUSED, ns=[NS]), want=T.OTHERERROR),
    Typed(name="badvers", msg=reply(ext_rcode=1), want=T.OTHERERROR),
    Typed(name="update", msg=reply(opcode=5, answer=[A]), want=T.UPDATE),
    Typed(name="notify", msg=reply(opcode=4), want=T.META),
    Typed(name="axfr", msg=reply(qtype="AXFR", answer=[A]), want=T.META),
    Typed(name="ixfr", msg=reply(qtype="IXFR"), want=T.META),
    Typed(name="valid rrsig with do", msg=reply(answer=[A, SIG_VALID], do=True), want=T.NOERROR),
    Typed(
        name="expired rrsig with do", msg=reply(answer=[A, SIG_EXPIRED], do=True), want=T.OTHERERROR
    ),
    Typed(
        name="expired rrsig in authority",
        msg=reply(ns=[SOA, SIG_EXPIRED], do=True),
        want=T.OTHERERROR,
    ),
    Typed(name="expired rrsig without do", msg=reply(answer=[A, SIG_EXPIRED]), want=T.NOERROR),
]


@pytest.mark.parametrize("case", TYPES, ids=lambda c: c.name)
def test_classify(case: Typed) -> None:
    assert classify(case.msg, NOW) is case.want


def test_classify_no_reply() -> None:
    assert classify(None) is ResponseType.OTHERERROR


def test_rrsig_times_use_serial_arithmetic() -> None:
    # Inception 2020, expiration 2030: valid in 2023 and, after 32-bit wrap-around, still
    # compared within 68 years of now.
    msg = reply(answer=[A, SIG_VALID], do=True)
    assert classify(msg, NOW) is ResponseType.NOERROR
    assert classify(msg, 1_500_000_000) is ResponseType.OTHERERROR  # 2017: before inception
    assert classify(msg, 1_950_000_000) is ResponseType.OTHERERROR  # 2031: after expiration


def test_classify_uses_the_wall_clock_by_default() -> None:
    assert classify(reply(answer=[A, SIG_VALID], do=True)) is ResponseType.NOERROR


def test_full_rcode_includes_the_extended_bits() -> None:
    assert full_rcode(reply(ext_rcode=1)) == rc.BADVERS
    assert full_rcode(reply(rcode=rc.NXDOMAIN)) == rc.NXDOMAIN


@pytest.mark.parametrize(
    ("t", "want"),
    [
        (T.NOERROR, ResponseClass.SUCCESS),
        (T.DELEGATION, ResponseClass.SUCCESS),
        (T.NXDOMAIN, ResponseClass.DENIAL),
        (T.NODATA, ResponseClass.DENIAL),
        (T.SERVERERROR, ResponseClass.ERROR),
        (T.META, ResponseClass.ERROR),
        (T.UPDATE, ResponseClass.ERROR),
        (T.OTHERERROR, ResponseClass.ERROR),
    ],
)
def test_class_of(t: ResponseType, want: ResponseClass) -> None:
    assert class_of(t) is want


@dataclass(frozen=True, kw_only=True)
class Answers:
    name: str
    msg: DNSRecord
    want: bool


CNAME = "www.example.org. 60 IN CNAME web.example.org."
ANSWERS = [
    Answers(name="direct", msg=reply(answer=[A]), want=True),
    Answers(
        name="owner case differs",
        msg=reply("WWW.Example.Org.", answer=[A]),
        want=True,
    ),
    Answers(
        name="cname chain",
        msg=reply(
            answer=[
                CNAME,
                "web.example.org. 60 IN CNAME lb.example.net.",
                "LB.example.net. 60 IN A 192.0.2.2",
            ]
        ),
        want=True,
    ),
    Answers(
        name="chain in any order",
        msg=reply(answer=["web.example.org. 60 IN A 192.0.2.2", CNAME]),
        want=True,
    ),
    Answers(name="cname only", msg=reply(answer=[CNAME]), want=False),
    Answers(
        name="record of another type at the end",
        msg=reply(answer=[CNAME, "web.example.org. 60 IN AAAA 2001:db8::1"]),
        want=False,
    ),
    Answers(
        name="record at a name off the chain",
        msg=reply(answer=[CNAME, "other.example.org. 60 IN A 192.0.2.3"]),
        want=False,
    ),
    Answers(
        name="cname loop",
        msg=reply(
            answer=[
                CNAME,
                "web.example.org. 60 IN CNAME www.example.org.",
                "www.example.org. 60 IN A 192.0.2.1",
            ]
        ),
        want=False,
    ),
    Answers(
        name="two targets",
        msg=reply(
            answer=[
                CNAME,
                "www.example.org. 60 IN CNAME other.example.org.",
                "web.example.org. 60 IN A 192.0.2.2",
            ]
        ),
        want=False,
    ),
    Answers(
        name="duplicate cname",
        msg=reply(answer=[CNAME, CNAME, "web.example.org. 60 IN A 192.0.2.2"]),
        want=True,
    ),
    Answers(name="cname query", msg=reply(qtype="CNAME", answer=[CNAME]), want=True),
    Answers(name="cname query, no cname", msg=reply(qtype="CNAME", answer=[A]), want=False),
    Answers(name="any query", msg=reply(qtype="ANY", answer=[A]), want=True),
    Answers(
        name="any query, other owner",
        msg=reply(qtype="ANY", answer=["web.example.org. 60 IN A 192.0.2.2"]),
        want=False,
    ),
    Answers(
        name="class mismatch",
        msg=reply(qclass="CH", answer=[A]),
        want=False,
    ),
    Answers(name="no answer", msg=reply(ns=[SOA]), want=False),
    Answers(name="nxdomain", msg=reply(rcode=rc.NXDOMAIN, answer=[A]), want=False),
]


@pytest.mark.parametrize("case", ANSWERS, ids=lambda c: c.name)
def test_answers_question(case: Answers) -> None:
    assert answers_question(case.msg) is case.want
    assert is_nodata(case.msg) is (bool(case.msg.rr) and not case.want)


def test_empty_answer_is_not_nodata() -> None:
    assert not is_nodata(reply(extra=[A]))


def test_cache_type_turns_a_non_answering_chain_with_soa_into_nodata() -> None:
    assert cache_type(reply(answer=[CNAME], ns=[SOA])) is ResponseType.NODATA
    assert cache_type(reply(answer=[CNAME])) is ResponseType.NOERROR
    assert cache_type(reply(answer=[A], ns=[SOA])) is ResponseType.NOERROR
    assert has_soa(reply(ns=[NS, SOA])) and not has_soa(reply(ns=[NS]))


@pytest.mark.parametrize(
    ("msg", "t", "maximum", "want"),
    [
        (reply(answer=[A], ns=[SOA]), T.NOERROR, 3600, 60),
        (reply(answer=[A], extra=["ns.example.org. 10 IN A 192.0.2.53"]), T.NOERROR, 3600, 10),
        (reply(answer=[A]), T.NOERROR, 30, 30),
        (reply(rcode=rc.NXDOMAIN, ns=[SOA]), T.NXDOMAIN, 1800, 300),
        (reply(ns=[SOA]), T.NODATA, 100, 100),
        (reply(answer=["www.example.org. 0 IN A 192.0.2.1"]), T.NOERROR, 3600, 0),
        (reply(do=True, answer=[A]), T.NOERROR, 3600, 60),  # the OPT's TTL field is not a TTL
        (reply(), T.NOERROR, 3600, MINIMAL_TTL_S),
        (reply(do=True), T.NOERROR, 3600, MINIMAL_TTL_S),
        (reply(ns=[NS]), T.DELEGATION, 3600, MINIMAL_TTL_S),
        (reply(rcode=rc.SERVFAIL, ns=[SOA]), T.SERVERERROR, 3600, MINIMAL_TTL_S),
    ],
)
def test_minimal_ttl(msg: DNSRecord, t: ResponseType, maximum: int, want: int) -> None:
    assert minimal_ttl(msg, t, maximum) == want


@given(
    ttls=st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=1, max_size=6),
    maximum=st.integers(min_value=1, max_value=7200),
)
def test_minimal_ttl_is_the_smallest_capped(ttls: list[int], maximum: int) -> None:
    msg = reply(answer=[f"www.example.org. {t} IN A 192.0.2.{i}" for i, t in enumerate(ttls)])
    assert minimal_ttl(msg, classify(msg, NOW), maximum) == min([*ttls, maximum])


def test_classification_does_not_change_the_message() -> None:
    msg = reply(answer=[CNAME, "web.example.org. 60 IN A 192.0.2.2"], ns=[SOA], do=True)
    before = msg.pack()
    classify(msg, NOW)
    cache_type(msg, NOW)
    answers_question(msg)
    minimal_ttl(msg, T.NOERROR, 3600)
    assert msg.pack() == before
