"""forward's building blocks without a server: reply checks, TO words, the pool, merging."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from dnslib import EDNS0, RR, A, DNSLabel, DNSRecord, EDNSOption

from clusterdns.chain.request import Edns, Request, name_text, text_labels
from clusterdns.dnsutil.codec import parse_message
from clusterdns.plugins.cache.handler import question_matches, refresh_request
from clusterdns.plugins.forward.config import Transport, UpstreamAddr, parse_to
from clusterdns.plugins.forward.handler import merge_key, personalise
from clusterdns.plugins.forward.transport import (
    ConnPool,
    Question,
    RandomPool,
    StreamConn,
    UpstreamQuery,
    check_reply,
    hostport,
    packed_wire,
    port_range,
    reused_wire,
)
from tests.dnstest import make_request

QUESTION = Question("example.com.", 1, 1)


def reply_wire(
    qname: str = "Example.COM.", qtype: str = "A", qid: int = 7, qr: bool = True
) -> bytes:
    q = DNSRecord.question(qname, qtype)
    q.header.id = qid
    r = q.reply() if qr else q
    if qr:
        r.add_answer(*RR.fromZone(f"{qname} 60 IN A 192.0.2.1"))
    return bytes(r.pack())


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (reply_wire(), None),
        (reply_wire(qid=8), "id"),
        (reply_wire(qr=False), "not_response"),
        (reply_wire(qname="other.example."), "question"),
        (reply_wire(qtype="AAAA"), "question"),
        (reply_wire()[:11], "malformed"),
        (reply_wire()[:20], "malformed"),
        (reply_wire()[:4] + b"\x00\x00" + reply_wire()[6:12], "question"),  # no question
    ],
    ids=["ok", "id", "not-response", "name", "type", "short", "cut", "no-question"],
)
def test_check_reply(wire: bytes, reason: str | None) -> None:
    result = check_reply(wire, 7, QUESTION)
    if reason is None:
        assert isinstance(result, DNSRecord)  # names compare without regard to case
    else:
        assert result == reason


def labels_reply(labels: tuple[bytes, ...], qid: int = 7) -> bytes:
    """A reply whose question is `labels` (wire labels: text would split a label with a dot)."""
    q = DNSRecord.question(".", "A")
    q.q.qname = DNSLabel(labels)
    q.header.id = qid
    return bytes(q.reply().pack())


@pytest.mark.parametrize(
    ("labels", "name", "matches"),
    [
        ((b"a.b", b"example", b"com"), r"a\.b.example.com.", True),
        ((b"a", b"b", b"example", b"com"), r"a\.b.example.com.", False),
        ((b"a.b", b"example", b"com"), "a.b.example.com.", False),
        ((b"A\\B", b"Example", b"com"), r"a\\b.example.com.", True),
        ((b"a b", b"example", b"com"), name_text((b"a b", b"example", b"com")), True),
        ((b"x@y;(z)", b"com"), name_text((b"x@y;(z)", b"com")), True),
        ((b"\xff\x00", b"com"), r"\255\000.com.", True),
        ((b"\xff\x00", b"com"), r"\255\001.com.", False),
    ],
)
def test_the_reply_question_is_compared_in_the_escaped_text_form(
    labels: tuple[bytes, ...], name: str, matches: bool
) -> None:
    """forward and cache compare a reply's question with `Request.name` (escaped text)."""
    wire = labels_reply(labels)
    result = check_reply(wire, 7, Question(name, 1, 1))
    assert isinstance(result, DNSRecord) is matches, result
    req = Request(
        parse_message(labels_reply(text_labels(name))),
        b"",
        proto="udp",
        remote=("10.0.0.1", 53),
        local=("10.0.0.2", 53),
    )
    assert req.name == name
    assert question_matches(req, parse_message(wire)) is matches


@pytest.mark.parametrize(
    ("word", "want"),
    [
        ("10.0.0.1", [UpstreamAddr(host="10.0.0.1", port=53)]),
        ("10.0.0.1:5353", [UpstreamAddr(host="10.0.0.1", port=5353)]),
        ("[::1]", [UpstreamAddr(host="::1", port=53)]),
        ("::1:53", [UpstreamAddr(host="::1:53", port=53)]),  # a valid IPv6 address, as in Go
        ("0:0::1", [UpstreamAddr(host="::1", port=53)]),
        ("dns://[fd00::1]:54", [UpstreamAddr(host="fd00::1", port=54)]),
        (
            "tls://10.0.0.1%dns.example.org",
            [
                UpstreamAddr(
                    host="10.0.0.1",
                    port=853,
                    transport=Transport.TLS,
                    server_name="dns.example.org",
                )
            ],
        ),
    ],
)
def test_parse_to(word: str, want: list[UpstreamAddr]) -> None:
    assert parse_to(word) == want


@pytest.mark.parametrize("word", ["10.0.0.1:", "10.0.0.1:x", "[::1]x", "[10.0.0.1]:53", "dns://"])
def test_parse_to_rejects(word: str) -> None:
    with pytest.raises(ValueError):
        parse_to(word)


def test_addr_label_and_hostport() -> None:
    assert UpstreamAddr(host="::1", port=53).addr == "[::1]:53"
    assert UpstreamAddr(host="10.0.0.1", port=53).addr == "10.0.0.1:53"
    assert UpstreamAddr(host="::1", port=53).family == socket.AF_INET6
    assert hostport(("::1", 5, 0, 0)) == "[::1]:5"
    low, high = port_range()
    assert 1024 <= low <= high <= 65535


def test_probe_query() -> None:
    probe = UpstreamQuery.probe("example.org.", rd=False)
    msg = DNSRecord.parse(probe.with_id(99))
    assert msg.header.id == 99 and not msg.header.rd
    assert str(msg.q.qname) == "example.org." and msg.q.qtype == 2
    assert probe.question == Question("example.org.", 2, 1)


def _request(wire: bytes) -> Request:
    return Request(
        DNSRecord.parse(wire), wire, proto="udp", remote=("10.0.0.9", 5), local=("10.0.0.1", 53)
    )


def _query(name: str, qtype: str = "A", **flags: int) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    for flag, value in flags.items():
        setattr(q.header, flag, value)
    return q


def _with_edns(q: DNSRecord, **kwargs: object) -> DNSRecord:
    q.add_ar(EDNS0(**kwargs))
    return q


def _with_bufsize(req: Request) -> Request:
    assert req.edns is not None
    req.edns = req.edns.with_size(512)
    return req


def _with_edns_options(req: Request) -> Request:
    req.edns = Edns(0, 1232, True, ((10, b"12345678"), (65001, b"")))
    return req


REUSED = {
    "plain A": _request(_query("example.com.").pack()),
    "mixed case, RD off": _request(_query("ExAmPle.COM.", "AAAA", rd=0).pack()),
    "AD and CD": _request(_query("example.com.", "MX", ad=1, cd=1).pack()),
    "EDNS with DO": _request(_with_edns(_query("example.com."), udp_len=4096, flags="do").pack()),
    "EDNS with options": _request(
        _with_edns(
            _query("example.com.", "TXT"), udp_len=1232, opts=[EDNSOption(10, b"12345678")]
        ).pack()
    ),
    "bufsize changed the size": _with_bufsize(
        _request(_with_edns(_query("example.com."), udp_len=4096).pack())
    ),
    "a plugin added options": _with_edns_options(_request(_query("example.com.").pack())),
    "cache's sub-request (AD set)": refresh_request(
        _request(_with_edns(_query("example.com."), udp_len=1232).pack())
    ),
    "root name": _request(_query(".", "NS").pack()),
}


@pytest.mark.parametrize("req", REUSED.values(), ids=REUSED.keys())
def test_reused_wire_is_byte_for_byte_the_packed_query(req: Request) -> None:
    reused = reused_wire(req)
    assert reused is not None
    assert reused[2:] == packed_wire(req)[2:]


def test_queries_with_records_are_packed() -> None:
    q = _query("example.com.")
    q.add_answer(RR("example.com.", rdata=A("192.0.2.1")))
    assert reused_wire(_request(q.pack())) is None
    q = _query("example.com.")
    q.add_ar(RR("example.com.", rdata=A("192.0.2.1")))
    assert reused_wire(_request(q.pack())) is None


def test_merge_key_separates_what_changes_the_answer() -> None:
    base = merge_key(make_request("Example.COM.", "A"))
    assert base == merge_key(make_request("example.com.", "A"))
    assert base != merge_key(make_request("example.com.", "AAAA"))
    assert base != merge_key(make_request("example.com.", "A", proto="tcp"))
    assert base != merge_key(make_request("example.com.", "A", edns_size=1232))
    with_do = merge_key(make_request("example.com.", "A", edns_size=1232, do=True))
    assert with_do != merge_key(make_request("example.com.", "A", edns_size=1232))
    # The buffer size alone does not matter: the writer fits the shared reply to each client.
    assert merge_key(make_request("example.com.", "A", edns_size=4096)) == merge_key(
        make_request("example.com.", "A", edns_size=1232)
    )


def test_personalise_gives_each_client_its_id_question_and_own_records() -> None:
    upstream = DNSRecord.parse(reply_wire(qname="example.com.", qid=1))
    upstream.add_ar(EDNS0(udp_len=1232))
    plain = make_request("EXAMPLE.com.", "A")
    mine = personalise(upstream, plain)
    assert mine.header.id == plain.id
    assert str(mine.q.qname) == "EXAMPLE.com."
    assert not [rr for rr in mine.ar if rr.rtype == 41]  # no OPT for a client without EDNS
    mine.rr[0].ttl = 5
    assert upstream.rr[0].ttl == 60
    with_edns = personalise(upstream, make_request("example.com.", "A", edns_size=4096))
    assert [rr.rclass for rr in with_edns.ar if rr.rtype == 41] == [1232]


@pytest.fixture
async def conns() -> AsyncIterator[list[StreamConn]]:
    made: list[StreamConn] = []
    peers: list[socket.socket] = []
    for i in range(3):
        ours, theirs = socket.socketpair()
        peers.append(theirs)
        reader, writer = await asyncio.open_connection(sock=ours)
        made.append(StreamConn(reader, writer, "tcp", f"conn{i}", now_s=100.0))
    yield made
    for conn in made:
        conn.close()
    for peer in peers:
        peer.close()


async def test_pool_is_fifo_and_expires(conns: list[StreamConn]) -> None:
    pool = ConnPool(expire_s=10.0, max_age_s=0.0, max_idle=2)
    a, b, c = conns
    pool.give(a, 100.0)
    pool.give(b, 105.0)
    pool.give(c, 106.0)  # over max_idle: closed
    assert c.closed and pool.idle_count("tcp") == 2
    assert pool.take("udp", 106.0) is None
    assert pool.take("tcp", 111.0) is b  # a idled 11 s > expire: closed and skipped
    assert a.closed
    pool.give(b, 112.0)
    pool.sweep(130.0)
    assert b.closed and pool.idle_count("tcp") == 0


async def test_pool_max_age(conns: list[StreamConn]) -> None:
    pool = ConnPool(expire_s=10.0, max_age_s=20.0, max_idle=0)
    a, b, _ = conns
    pool.give(a, 119.0)
    pool.give(b, 119.0)
    assert pool.take("tcp", 121.0) is None  # created at 100: older than 20 s
    assert a.closed and b.closed


def test_random_pool_covers_its_range_without_bias() -> None:
    pool = RandomPool()
    draws = [pool.below(3) for _ in range(30_000)]
    counts = [draws.count(v) for v in range(3)]
    assert set(draws) == {0, 1, 2}
    assert all(9_000 < c < 11_000 for c in counts), counts  # ~170 sigma away from failing
    ids = {pool.u16() for _ in range(5_000)}
    assert len(ids) > 4_500  # 16-bit values: a few hundred collisions at most
    assert pool.below(1) == 0 and 0 <= pool.below(65536) < 65536
