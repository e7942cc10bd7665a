"""Rows W1-W21 of reliability.md that tests/server/test_wire_policy.py does not already cover.

Each test names its row. Outcomes follow the order of authority (issue 8, spec §23, CoreDNS's
observable behaviour, then the research notes); docs/reliability.md lists every row with its
outcome and the test that asserts it.
"""

from __future__ import annotations

import asyncio
import struct
import tracemalloc

import pytest
from dnslib import DNSRecord

from clusterdns.chain.fastpath import FastPath
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.server.mux import Mux
from clusterdns.server.responder import Responder
from tests.dnstest import (
    build_config,
    running_server,
    tcp_exchange,
    udp_exchange,
    udp_replies_before_probe,
)
from tests.reliability.support import (
    CLUSTER,
    SERVICE,
    header,
    name,
    opt,
    option,
    query,
    question,
    read_reply,
    tcp_connection,
)

WHOAMI = ".:0 {\n    whoami\n}\n"


def flags_of(reply: bytes) -> int:
    return int(struct.unpack_from("!H", reply, 2)[0])


def rcode_of(reply: bytes) -> int:
    return flags_of(reply) & 0xF


def counts_of(reply: bytes) -> tuple[int, int, int, int]:
    qd, an, ns, ar = struct.unpack_from("!HHHH", reply, 4)
    return int(qd), int(an), int(ns), int(ar)


# -- W4: every opcode other than QUERY and NOTIFY -------------------------------------------


@pytest.mark.parametrize("opcode", [3, *range(6, 16)])
async def test_w4_reserved_opcodes_are_notimp_with_the_opcode_echoed(opcode: int) -> None:
    data = header(flags=(opcode << 11) | 0x0100) + question()
    async with running_server(WHOAMI) as server:
        for reply in (
            await udp_exchange(server.port(), data),
            (await tcp_exchange(server.port(), data))[0],
        ):
            assert rcode_of(reply) == rc.NOTIMP
            assert (flags_of(reply) >> 11) & 0xF == opcode
            assert counts_of(reply) == (0, 0, 0, 0)


# -- W5: NOTIFY reaches the chain, as in CoreDNS ---------------------------------------------


async def test_w5_notify_for_a_cluster_name_is_answered_like_a_query() -> None:
    async with running_server(CLUSTER) as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), query(SERVICE, flags=0x2100)))
    assert reply.header.opcode == 4 and reply.header.rcode == rc.NOERROR
    assert [str(r.rdata) for r in reply.rr] == ["10.96.0.1"]


# -- W7: QDCOUNT 0 with a COOKIE: no cookie support, so FORMERR -----------------------------


async def test_w7_qdcount_zero_with_cookie_is_formerr() -> None:
    data = header(qd=0, ar=1) + opt(options=option(10, b"\x01" * 8))
    async with running_server(WHOAMI) as server:
        for reply in (
            await udp_exchange(server.port(), data),
            (await tcp_exchange(server.port(), data))[0],
        ):
            assert rcode_of(reply) == rc.FORMERR
            assert counts_of(reply) == (0, 0, 0, 0)  # no OPT either: the accept stage's reply


# -- W11: 65 kB messages built to cost work --------------------------------------------------


def pointer_chain_message() -> bytes:
    """Question, then an answer whose rdata is a chain of 32,000 compression pointers (each to
    the one before), then an authority record whose owner enters the chain at its end."""
    q = question("a.example.")
    rdata_start = 12 + len(q) + 1 + 10
    hops = 32_000
    chain = bytearray()
    for i in range(hops):
        here = rdata_start + 2 * i
        target = 12 if i == 0 else here - 2  # the first points at the question name
        chain += struct.pack("!H", 0xC000 | target)
    answer = b"\x00" + struct.pack("!HHIH", 65280, 1, 0, len(chain)) + bytes(chain)
    last = rdata_start + 2 * (hops - 1)
    authority = struct.pack("!H", 0xC000 | last) + struct.pack("!HHIH", 1, 1, 0, 0)
    return header(an=1, ns=1) + q + answer + authority


def inflated_counts_message() -> bytes:
    return header(qd=1, an=65535, ns=65535, ar=65535) + question() + b"\x00" * 65_000


def largest_accepted_message() -> bytes:
    """The most a header-accepted query can carry: one answer and one authority record with
    ~32 kB of rdata each, every owner a pointer to a 234-octet question name."""
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x28" + b"b" * 40 + b"\x00"
    q = long_name + b"\x00\x01\x00\x01"
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 65280, 1, 0, 32_000) + b"\xff" * 32_000
    return header(an=1, ns=1) + q + rr + rr


@pytest.mark.parametrize(
    "message",
    [pointer_chain_message, inflated_counts_message, largest_accepted_message],
    ids=lambda f: f.__name__,
)
async def test_w11_large_hostile_messages_over_tcp(message: object) -> None:
    assert callable(message)
    data = message()
    assert isinstance(data, bytes) and 60_000 < len(data) <= 65_535
    async with running_server(WHOAMI) as server:
        reply, after = await tcp_exchange(server.port(), data, query())
    if message is largest_accepted_message:
        # Structurally valid: answered (whoami), the server keeps serving.
        assert rcode_of(reply) == rc.NOERROR
    else:
        assert rcode_of(reply) == rc.FORMERR
    assert rcode_of(after) == rc.NOERROR


@pytest.mark.parametrize(
    "message",
    [pointer_chain_message, inflated_counts_message, largest_accepted_message],
    ids=lambda f: f.__name__,
)
async def test_w11_peak_memory_per_hostile_message_is_bounded(message: object) -> None:
    assert callable(message)
    data = message()
    assert isinstance(data, bytes)
    config = build_config(".:53 {\n    whoami\n}\n")
    responder = Responder(
        mux=Mux(next(iter(config.listeners.values()))),
        fastpath=FastPath(config.process.generations),
        metrics=config.process.metrics,
        server="dns://:53",
    )
    sent: list[bytes] = []
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        task = responder.submit(data, "tcp", ("10.0.0.1", 4000), ("127.0.0.1", 53), sent.append)
        if task is not None:
            await asyncio.wait_for(task, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(sent) == 1
    # The message itself is already in memory; handling it may add about one more copy of it
    # (the decoded rdata) plus a constant, never the megabytes of CVE-2026-82399.
    assert peak < len(data) + 192 * 1024, f"peak {peak} bytes for a {len(data)}-byte message"


# -- W14: unusual label bytes ----------------------------------------------------------------

ODD_LABELS = b"\x03a.b\x02\x00x\x02\\\\\x03\xc3\xa9A\x03MiX"


@pytest.mark.parametrize("zone", ["example.", "default.svc.cluster.local."])
async def test_w14_odd_label_bytes_parse_and_the_question_is_echoed_byte_for_byte(
    zone: str,
) -> None:
    qname = ODD_LABELS + name(zone)
    data = header() + question(qname)
    async with running_server(CLUSTER) as server:
        for reply in (
            await udp_exchange(server.port(), data),
            (await tcp_exchange(server.port(), data))[0],
        ):
            assert reply[12 : 12 + len(qname) + 4] == data[12:]
            # Outside the cluster whoami answers; inside, no such Service: NXDOMAIN.
            want = rc.NXDOMAIN if "cluster" in zone else rc.NOERROR
            assert rcode_of(reply) == want


def question_labels(wire_name: bytes) -> list[bytes]:
    labels, off = [], 0
    while wire_name[off]:
        labels.append(wire_name[off + 1 : off + 1 + wire_name[off]])
        off += 1 + wire_name[off]
    return labels


async def test_w14_answer_owner_keeps_the_question_bytes() -> None:
    qname = ODD_LABELS + name("example.")
    async with running_server(WHOAMI) as server:
        reply = await udp_exchange(server.port(), header() + question(qname))
    msg = parse_message(reply)
    owners = [tuple(rr.rname.label) for rr in msg.ar]
    want = tuple(msg.q.qname.label)
    assert tuple(question_labels(qname)) == want  # the question is echoed byte for byte
    assert owners[0] == want  # the A record's owner is the question's exact labels
    assert owners[1] == (b"_udp", *want)


# -- W16: every non-IN class is refused (deviation D7) ---------------------------------------


@pytest.mark.parametrize("qclass", [3, 4, 254, 255], ids=["CH", "HS", "NONE", "ANY"])
async def test_w16_non_in_classes_are_refused_before_the_chain(qclass: int) -> None:
    data = header() + question(SERVICE, 1, qclass)
    async with running_server(CLUSTER) as server:
        reply = await udp_exchange(server.port(), data)
    assert rcode_of(reply) == rc.REFUSED and counts_of(reply)[1:] == (0, 0, 0)
    assert reply[12:] == data[12:]


# -- W17: ANY ---------------------------------------------------------------------------------


async def test_w17_any_with_the_any_plugin_is_one_hinfo_on_both_transports() -> None:
    corefile = CLUSTER.replace("    kubernetes", "    any\n    kubernetes", 1)
    data = query(SERVICE, 255)
    async with running_server(corefile) as server:
        for raw in (
            await udp_exchange(server.port(), data),
            (await tcp_exchange(server.port(), data))[0],
        ):
            reply = DNSRecord.parse(raw)
            assert [(r.rtype, r.ttl) for r in reply.rr] == [(13, 8482)]
            assert len(raw) < 3 * len(data)


async def test_w17_any_without_the_any_plugin_is_nodata_for_a_cluster_name() -> None:
    # CoreDNS's kubernetes plugin answers other types with a "fake A lookup": NODATA.
    async with running_server(CLUSTER) as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), query(SERVICE, 255)))
    assert reply.header.rcode == rc.NOERROR and not reply.rr
    assert [r.rtype for r in reply.auth] == [6]


# -- W18: zone transfers ----------------------------------------------------------------------


@pytest.mark.parametrize("qtype", [252, 251], ids=["AXFR", "IXFR"])
async def test_w18_zone_transfers_are_refused(qtype: int) -> None:
    data = query("cluster.local.", qtype)
    async with running_server(CLUSTER) as server:
        for reply in (
            await udp_exchange(server.port(), data),
            (await tcp_exchange(server.port(), data))[0],
        ):
            assert rcode_of(reply) == rc.REFUSED and counts_of(reply) == (1, 0, 0, 0)


# -- W19/W20: meta and unknown query types ----------------------------------------------------


@pytest.mark.parametrize("qtype", [41, 250, 249, 65280], ids=["OPT", "TSIG", "TKEY", "TYPE65280"])
async def test_w19_w20_other_qtypes_for_an_existing_name_are_nodata(qtype: int) -> None:
    async with running_server(CLUSTER) as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), query(SERVICE, qtype)))
        missing = DNSRecord.parse(
            await udp_exchange(server.port(), query("nosuch.default.svc.cluster.local.", qtype))
        )
    assert reply.header.rcode == rc.NOERROR and not reply.rr
    assert [r.rtype for r in reply.auth] == [6]
    assert missing.header.rcode == rc.NXDOMAIN


# -- W21: TSIG records in a query -------------------------------------------------------------


def tsig_record(key: str = "no-such-key.") -> bytes:
    rdata = (
        name("hmac-sha256.")
        + struct.pack("!HIH", 0, 1_700_000_000, 300)  # time signed (48 bits), fudge
        + struct.pack("!H", 32)
        + b"\x00" * 32  # MAC
        + struct.pack("!HHH", 0x1234, 0, 0)  # original ID, error, other len
    )
    return name(key) + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata


@pytest.mark.parametrize("tsig_last", [True, False], ids=["TSIG last", "TSIG before OPT"])
async def test_w21_tsig_without_keys_is_ignored_as_coredns_does(tsig_last: bool) -> None:
    extra = opt() + tsig_record() if tsig_last else tsig_record() + opt()
    data = header(ar=2) + question(SERVICE) + extra
    async with running_server(CLUSTER) as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), data))
    assert reply.header.rcode == rc.NOERROR
    assert [str(r.rdata) for r in reply.rr] == ["10.96.0.1"]
    assert 250 not in [r.rtype for r in reply.ar]


# -- W1/W2 over TCP: short or response messages are not answered there either ----------------


async def test_w2_response_over_tcp_gets_no_reply() -> None:
    response = header(flags=0x8100) + question()
    async with running_server(WHOAMI) as server, tcp_connection(server.port()) as (reader, writer):
        for message in (response, query(qid=0x4321)):
            writer.write(len(message).to_bytes(2, "big") + message)
        reply = await read_reply(reader)
    assert reply[:2] == b"\x43\x21"  # the response got nothing; the query after it its reply


async def test_w1_udp_drops_are_silent_for_the_sender() -> None:
    async with running_server(WHOAMI) as server:
        assert await udp_replies_before_probe(server.port(), b"\x12\x34\x01") == []
