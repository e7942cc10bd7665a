"""Malformed and unusual packets through the real server: each gets its documented outcome."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from dnslib import EDNS0, DNSRecord

from clusterdns.dnsutil import rcode as rc
from tests.dnstest import running_server, tcp_exchange, udp_exchange, udp_replies_before_probe

COREFILE = ".:0 {\n    whoami\n}\n"


def header(
    qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QNAME = b"\x07example\x03org\x00"
QUESTION = QNAME + b"\x00\x01\x00\x01"
VALID = header() + QUESTION


def opt(version: int = 0, size: int = 1232, options: bytes = b"", do: bool = False) -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, size, ttl, len(options)) + options


@dataclass(frozen=True, kw_only=True)
class Packet:
    name: str
    data: bytes
    outcome: str
    """drop | FORMERR | NOTIMP | SERVFAIL | REFUSED | BADVERS | NOERROR"""
    question: bool = False
    """Whether the reply must echo the question."""

    def __str__(self) -> str:
        return self.name


PACKETS = [
    Packet(name="empty datagram", data=b"", outcome="drop"),
    Packet(name="truncated header (11 bytes)", data=VALID[:11], outcome="drop"),
    Packet(name="a response (QR=1)", data=header(flags=0x8100) + QUESTION, outcome="drop"),
    Packet(name="opcode IQUERY", data=header(flags=0x0900) + QUESTION, outcome="NOTIMP"),
    Packet(name="opcode STATUS", data=header(flags=0x1100) + QUESTION, outcome="NOTIMP"),
    Packet(name="opcode UPDATE", data=header(flags=0x2900) + QUESTION, outcome="NOTIMP"),
    Packet(name="QDCOUNT 0", data=header(qd=0), outcome="FORMERR"),
    Packet(name="QDCOUNT 2", data=header(qd=2) + QUESTION + QUESTION, outcome="FORMERR"),
    Packet(name="ANCOUNT 2", data=header(an=2) + QUESTION, outcome="FORMERR"),
    Packet(name="NSCOUNT 2", data=header(ns=2) + QUESTION, outcome="FORMERR"),
    Packet(name="ARCOUNT 3", data=header(ar=3) + QUESTION, outcome="FORMERR"),
    Packet(name="header only, QDCOUNT 1", data=header(), outcome="SERVFAIL"),
    Packet(name="name runs past the end", data=header() + b"\x07exam", outcome="FORMERR"),
    Packet(name="question without type and class", data=header() + QNAME, outcome="FORMERR"),
    Packet(name="question with half a type", data=header() + QNAME + b"\x00", outcome="FORMERR"),
    Packet(
        name="pointer to itself", data=header() + b"\xc0\x0c\x00\x01\x00\x01", outcome="FORMERR"
    ),
    Packet(
        name="forward pointer",
        data=header() + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 32,
        outcome="FORMERR",
    ),
    Packet(
        name="pointer past the end",
        data=header() + b"\x03abc\xc3\xff\x00\x01\x00\x01",
        outcome="FORMERR",
    ),
    Packet(
        name="pointer loop through the answer",
        outcome="FORMERR",
        question=True,
        data=header(an=1)
        + QUESTION
        + b"\xc0\x1f"
        + b"\xc0\x1d"
        + b"\x00\x01\x00\x01\x00\x00\x00\x05\x00\x00",
    ),
    Packet(
        name="label length 64 (extended label 01)",
        data=header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        outcome="FORMERR",
    ),
    Packet(name="label type 10", data=header() + b"\x80abc\x00\x00\x01\x00\x01", outcome="FORMERR"),
    Packet(
        name="name longer than 255 octets",
        outcome="FORMERR",
        data=header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
    ),
    Packet(
        name="answer count larger than the packet",
        data=header(an=1) + QUESTION,
        outcome="FORMERR",
        question=True,
    ),
    Packet(
        name="rdata runs past the end",
        outcome="FORMERR",
        question=True,
        data=header(an=1) + QUESTION + b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x01\x02",
    ),
    Packet(
        name="two OPT records",
        data=header(ar=2) + QUESTION + opt() + opt(),
        outcome="FORMERR",
        question=True,
    ),
    Packet(
        name="OPT option overruns the record",
        outcome="FORMERR",
        question=True,
        data=header(ar=1) + QUESTION + opt(options=b"\x00\x0a\x00\x08\x01\x02"),
    ),
    Packet(
        name="COOKIE of 5 bytes",
        outcome="FORMERR",
        question=True,
        data=header(ar=1) + QUESTION + opt(options=b"\x00\x0a\x00\x05" + b"\x01" * 5),
    ),
    Packet(
        name="OPT in the answer section",
        outcome="FORMERR",
        question=True,
        data=header(an=1) + QUESTION + opt(),
    ),
    Packet(
        name="trailing garbage after a valid query",
        data=VALID + b"\xde\xad\xbe\xef",
        outcome="NOERROR",
        question=True,
    ),
    Packet(
        name="Z bit set", data=header(flags=0x0140) + QUESTION, outcome="NOERROR", question=True
    ),
    Packet(
        name="EDNS version 1",
        data=header(ar=1) + QUESTION + opt(version=1),
        outcome="BADVERS",
        question=True,
    ),
    Packet(
        name="class CH",
        data=header() + QNAME + b"\x00\x10\x00\x03",
        outcome="REFUSED",
        question=True,
    ),
    Packet(
        name="class ANY",
        data=header() + QNAME + b"\x00\x01\x00\xff",
        outcome="REFUSED",
        question=True,
    ),
    Packet(
        name="non-UTF-8 label",
        data=header() + b"\x02\xff\xfe" + QNAME + b"\x00\x01\x00\x01",
        outcome="NOERROR",
        question=True,
    ),
    Packet(
        name="NOTIFY opcode", data=header(flags=0x2000) + QUESTION, outcome="NOERROR", question=True
    ),
]


def check_reply(p: Packet, sent: bytes, reply: bytes) -> None:
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", reply)
    assert qid == 0x1234, p.name
    assert flags & 0x8000, f"{p.name}: QR not set"
    assert not flags & 0x0040, f"{p.name}: Z must be cleared"
    sent_flags = struct.unpack_from("!H", sent, 2)[0] if len(sent) >= 4 else 0
    assert flags & 0x0100 == sent_flags & 0x0100, f"{p.name}: RD not copied"
    code = flags & 0xF
    if p.outcome == "BADVERS":
        msg = DNSRecord.parse(reply)
        opts = [r for r in msg.ar if r.rtype == 41]
        assert len(opts) == 1 and (opts[0].ttl >> 24) == 1 and opts[0].rclass == 0, p.name
        assert code == 0 and not msg.rr and not msg.auth, p.name
    else:
        assert rc.rcode_name(code) == p.outcome, f"{p.name}: got {rc.rcode_name(code)}"
    if p.outcome in ("FORMERR", "NOTIMP"):
        assert an == ns == ar == 0, f"{p.name}: rejected replies carry no sections"
        opcode = (flags >> 11) & 0xF
        want_opcode = (sent_flags >> 11) & 0xF if p.outcome == "NOTIMP" else 0
        assert opcode == want_opcode, p.name
    if p.question:
        assert qd == 1, f"{p.name}: question not echoed"
        assert reply[12 : 12 + len(QNAME)] == sent[12 : 12 + len(QNAME)], p.name


@pytest.mark.parametrize("packet", PACKETS, ids=str)
async def test_udp_packet_outcome(packet: Packet) -> None:
    async with running_server(COREFILE) as server:
        replies = await udp_replies_before_probe(server.port(), packet.data)
        if packet.outcome == "drop":
            assert replies == [], packet.name
        else:
            assert len(replies) == 1, f"{packet.name}: {len(replies)} replies"
            check_reply(packet, packet.data, replies[0])
        # The server is still up and answers a valid query afterwards.
        assert DNSRecord.parse(await udp_exchange(server.port(), VALID)).header.rcode == 0


@pytest.mark.parametrize("packet", [p for p in PACKETS if p.outcome != "drop"], ids=str)
async def test_tcp_packet_outcome(packet: Packet) -> None:
    async with running_server(COREFILE) as server:
        reply, after = await tcp_exchange(server.port(), packet.data, VALID)
        check_reply(packet, packet.data, reply)
        assert DNSRecord.parse(after).header.rcode == 0


async def test_dropped_and_rejected_packets_are_counted() -> None:
    async with running_server(COREFILE) as server:
        port = server.port()
        await udp_replies_before_probe(port, b"\x00" * 5)
        await udp_replies_before_probe(port, header(flags=0x8100) + QUESTION)
        await udp_replies_before_probe(port, header(qd=0))
        await udp_replies_before_probe(port, header(flags=0x0900) + QUESTION)
        metrics = server.config.process.metrics
        assert metrics.dropped.get(("short",)) == 1
        assert metrics.dropped.get(("response",)) == 1
        assert metrics.rejected.get(("FORMERR",)) == 1
        assert metrics.rejected.get(("NOTIMP",)) == 1


async def test_badvers_keeps_question_and_rd() -> None:
    q = DNSRecord.question("Example.ORG", "A")
    q.add_ar(EDNS0(version=1, udp_len=4096))
    async with running_server(COREFILE) as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), q.pack()))
    assert str(reply.q.qname) == "Example.ORG."
    assert reply.header.rd == 1 and reply.header.qr == 1 and reply.header.aa == 0
    (o,) = [r for r in reply.ar if r.rtype == 41]
    assert o.ttl == 1 << 24 and o.rclass == 0 and not o.rdata
