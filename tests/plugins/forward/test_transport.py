"""forward's building blocks without a server: reply checks, TO words, the pool, merging."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from dnslib import EDNS0, RR, DNSRecord

from clusterdns.plugins.forward.config import Transport, UpstreamAddr, parse_to
from clusterdns.plugins.forward.handler import merge_key, personalise
from clusterdns.plugins.forward.transport import (
    ConnPool,
    Question,
    StreamConn,
    UpstreamQuery,
    check_reply,
    hostport,
    port_range,
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
