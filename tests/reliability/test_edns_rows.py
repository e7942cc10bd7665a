"""Rows E1-E15 of reliability.md (EDNS) not already covered by tests/server, and the ISC EDNS
compliance probes of reliability.md §1.2 run with the real `dig` against the cluster apex."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import ClassVar

import pytest
from dnslib import DNSRecord

from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.server.responder import MAX_UDP_REPLY
from tests.dnstest import dig, running_server, tcp_exchange, udp_exchange
from tests.reliability.support import (
    CLUSTER,
    SERVICE,
    ManyRecords,
    header,
    opt,
    opt_of,
    option,
    query,
    question,
)

WHOAMI = ".:0 {\n    whoami\n}\n"


def parse(raw: bytes) -> DNSRecord:
    # The server's own decoder: unlike dnslib's, it keeps an empty option at the end of an OPT.
    return parse_message(raw)


# -- E2: an OPT record whose owner is not the root --------------------------------------------


async def test_e2_opt_owner_not_root_is_formerr() -> None:
    data = header(ar=1) + question() + opt(owner=b"\x01x\x00")
    async with running_server(WHOAMI) as server:
        reply = await udp_exchange(server.port(), data)
    assert reply[3] & 0xF == rc.FORMERR


# -- E3: any EDNS version above 0 -------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 100, 255])
async def test_e3_edns_versions_above_zero_get_badvers_without_answer(version: int) -> None:
    data = query(SERVICE, edns=opt(version=version, options=option(100, b"zz")))
    async with running_server(CLUSTER) as server:
        reply = parse(await udp_exchange(server.port(), data))
    assert not reply.rr and not reply.auth and reply.header.rcode == 0
    found = opt_of(reply)
    assert found is not None
    _, ttl, options = found
    assert ttl >> 24 == 1 and (ttl >> 16) & 0xFF == 0  # extended rcode 1 -> BADVERS; version 0
    assert options == []  # option 100 not echoed


# -- E5: unknown EDNS flag bits ----------------------------------------------------------------


async def test_e5_unknown_edns_flags_are_ignored_and_cleared() -> None:
    data = query(SERVICE, edns=opt(flags=0x8000 | 0x0080 | 0x0001))
    async with running_server(CLUSTER) as server:
        reply = parse(await udp_exchange(server.port(), data))
    assert reply.header.rcode == rc.NOERROR and reply.rr
    found = opt_of(reply)
    assert found is not None and found[1] == 0x8000  # DO kept, the Z bits cleared


# -- E8/E9: advertised sizes out of range ------------------------------------------------------


@dataclass(frozen=True)
class SizeCase:
    advertised: int | None
    limit: int


SIZE_CASES = [
    SizeCase(None, 512),
    SizeCase(0, 512),  # E8: below 512 counts as 512
    SizeCase(100, 512),
    SizeCase(511, 512),
    SizeCase(1232, 1232),
    SizeCase(4096, 4096),
    SizeCase(65535, MAX_UDP_REPLY),  # E9: the server's own cap (docs/reliability.md)
]


@pytest.mark.parametrize("case", SIZE_CASES, ids=lambda c: f"advertised {c.advertised}")
async def test_e8_e9_e10_udp_reply_fits_the_negotiated_size(case: SizeCase) -> None:
    edns = None if case.advertised is None else opt(case.advertised)
    data = query("big.example.", edns=edns)
    async with running_server(WHOAMI, head=ManyRecords(1000)) as server:
        raw = await udp_exchange(server.port(), data)
    reply = parse(raw)
    assert len(raw) <= case.limit
    assert reply.header.tc and 0 < len(reply.rr) < 1000
    assert len(raw) > case.limit - 16  # records are kept while they fit
    found = opt_of(reply)
    if case.advertised is None:
        assert found is None
    else:
        # The client's own size is mirrored (spec §4.4), above the cap the cap.
        assert found is not None and found[0] == min(case.advertised, MAX_UDP_REPLY)


# -- E11: TCP carries up to 65,535 bytes, and truncates beyond ---------------------------------


async def test_e11_tcp_reply_larger_than_65535_is_truncated_over_tcp() -> None:
    async with running_server(WHOAMI, head=ManyRecords(5000)) as server:
        (raw,) = await tcp_exchange(server.port(), query("big.example."))
    assert 65000 < len(raw) <= 65535
    reply = parse(raw)
    assert reply.header.tc and 3000 < len(reply.rr) < 5000


async def test_e11_tcp_carries_what_udp_cannot() -> None:
    async with running_server(WHOAMI, head=ManyRecords(2000)) as server:
        (raw,) = await tcp_exchange(server.port(), query("big.example."))
    reply = parse(raw)
    assert not reply.header.tc and len(reply.rr) == 2000 and len(raw) > 4096


# -- E12/E13: COOKIE lengths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "ok"),
    [(5, False), (12, False), (41, False), (7, False), (8, True), (16, True), (40, True)],
)
async def test_e12_e13_cookie_length_decides_formerr(length: int, ok: bool) -> None:
    cookie = bytes(range(1, length + 1))
    data = query(edns=opt(options=option(10, cookie)))
    async with running_server(WHOAMI) as server:
        raw = await udp_exchange(server.port(), data)
    if not ok:
        assert raw[3] & 0xF == rc.FORMERR
        return
    reply = parse(raw)
    assert reply.header.rcode == rc.NOERROR
    found = opt_of(reply)
    assert found is not None and found[2] == [(10, cookie)]  # echoed unchanged, as CoreDNS


# -- E14: TCP keepalive in a UDP query ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "data"),
    [
        pytest.param(11, b"", id="keepalive, empty"),
        pytest.param(11, b"\x00\x10", id="keepalive with a timeout"),
        pytest.param(3, b"", id="NSID request"),
    ],
)
async def test_e14_tcp_keepalive_in_udp_is_answered_normally(code: int, data: bytes) -> None:
    query_data = query(SERVICE, edns=opt(options=option(code, data)))
    async with running_server(CLUSTER) as server:
        reply = parse(await udp_exchange(server.port(), query_data))
    assert reply.header.rcode == rc.NOERROR and reply.rr
    found = opt_of(reply)
    assert found is not None and found[2] == [(code, data)]  # copied back (spec §4.4)


# -- E15: error replies and the OPT record -----------------------------------------------------


class _Fails:
    name: ClassVar[str] = "fails"

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        raise RuntimeError("fails on purpose")


@dataclass(frozen=True)
class ErrorCase:
    label: str
    corefile: str
    data: bytes
    rcode: int
    opt: bool


ERROR_CASES = [
    ErrorCase(
        "REFUSED, no zone",
        "example.org:0 {\n    whoami\n}\n",
        query("other.test.", edns=opt(1400)),
        rc.REFUSED,
        True,
    ),
    ErrorCase(
        "NXDOMAIN",
        CLUSTER,
        query("nosuch.default.svc.cluster.local.", edns=opt(1400)),
        rc.NXDOMAIN,
        True,
    ),
    ErrorCase(
        "REFUSED, class CH",
        CLUSTER,
        header(ar=1) + question(SERVICE, 1, 3) + opt(1400),
        rc.REFUSED,
        True,
    ),
    ErrorCase(
        "FORMERR (accept stage)",
        WHOAMI,
        header(qd=2, ar=1) + question() + question() + opt(1400),
        rc.FORMERR,
        False,
    ),
    ErrorCase(
        "NOTIMP (accept stage)",
        WHOAMI,
        header(flags=0x2900, ar=1) + question() + opt(1400),
        rc.NOTIMP,
        False,
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.label)
async def test_e15_error_replies_keep_opt_except_from_the_accept_stage(case: ErrorCase) -> None:
    async with running_server(case.corefile) as server:
        raw = await udp_exchange(server.port(), case.data)
    assert raw[3] & 0xF == case.rcode
    arcount = struct.unpack_from("!H", raw, 10)[0]
    if case.opt:
        found = opt_of(parse(raw))
        assert found is not None and found[0] == 1400
    else:
        assert arcount == 0


async def test_e15_servfail_from_a_crash_keeps_opt() -> None:
    async with running_server(WHOAMI, head=_Fails()) as server:
        reply = parse(await udp_exchange(server.port(), query(edns=opt(1400, flags=0x8000))))
    assert reply.header.rcode == rc.SERVFAIL
    assert opt_of(reply) == (1400, 0x8000, [])


# -- ISC EDNS compliance probes, with dig ------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    label: str
    args: tuple[str, ...]
    status: str
    answer_soa: bool
    edns: str | None
    """Regex the `; EDNS:` line must match; None: no OPT in the reply."""
    absent: tuple[str, ...] = ()


PROBES = [
    Probe("plain", ("+noedns", "soa"), "NOERROR", True, None),
    Probe("edns0", ("+edns=0", "soa"), "NOERROR", True, r"version: 0, flags:;"),
    Probe("edns1", ("+edns=100", "+noednsneg", "soa"), "BADVERS", False, r"version: 0"),
    Probe("optlist", ("+ednsopt=100", "soa"), "NOERROR", True, r"version: 0", ("OPT=100",)),
    Probe("ednsflags", ("+ednsflags=0x80", "soa"), "NOERROR", True, r"version: 0", ("MBZ",)),
    Probe("do", ("+dnssec", "soa"), "NOERROR", True, r"flags: do;"),
    Probe("docd", ("+dnssec", "+bufsize=512", "+ignore", "dnskey"), "NOERROR", False, "udp"),
    Probe(
        "ednsopt edns1",
        ("+edns=100", "+noednsneg", "+ednsopt=100", "soa"),
        "BADVERS",
        False,
        r"version: 0",
        ("OPT=100",),
    ),
]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.label)
async def test_isc_edns_compliance_probe(probe: Probe) -> None:
    async with running_server(CLUSTER) as server:
        out = await dig(server.port(), "+norec", "cluster.local", *probe.args)
    assert f"status: {probe.status}" in out, out
    answer = out.partition(";; ANSWER SECTION:")[2].partition("\n\n")[0]
    has_soa = re.search(r"^cluster\.local\.\s+\d+\s+IN\s+SOA\s", answer, re.M) is not None
    assert has_soa == probe.answer_soa, out
    edns_line = re.search(r"^; EDNS: (.*)$", out, re.M)
    if probe.edns is None:
        assert edns_line is None, out
    else:
        assert edns_line is not None and re.search(probe.edns, edns_line.group(1)), out
    for text in probe.absent:
        assert text not in out, out
    size = re.search(r"MSG SIZE\s+rcvd: (\d+)", out)
    assert size is not None and (int(size.group(1)) <= 512 or "flags: qr tc" in out)
