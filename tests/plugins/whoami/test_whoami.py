"""whoami: the client's address and port, owned by the question's own bytes, for any name length."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from clusterdns.chain.request import MAX_NAME, Request
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.plugins.whoami import Whoami
from tests.dnstest import LOCAL, REMOTE, RecordingWriter, running_server, udp_exchange


def request_for(
    labels: tuple[bytes, ...], *, proto: str = "udp", remote: tuple[str, int] = REMOTE
) -> Request:
    q = DNSRecord(DNSHeader(id=1, rd=1), q=DNSQuestion(DNSLabel(labels), int(QTYPE.A)))
    wire = bytes(q.pack())
    return Request(parse_message(wire), wire, proto=proto, remote=remote, local=LOCAL)


def wire_length(labels: tuple[bytes, ...]) -> int:
    return sum(len(x) + 1 for x in labels) + 1


def long_name(octets: int) -> tuple[bytes, ...]:
    """Labels making a name of exactly `octets` octets on the wire."""
    labels: list[bytes] = []
    left = octets - 1
    while left > 0:
        size = min(63, left - 1)
        labels.append(b"x" * size)
        left -= size + 1
    assert wire_length(tuple(labels)) == octets
    return tuple(labels)


@dataclass(frozen=True, kw_only=True)
class Case:
    labels: tuple[bytes, ...]
    proto: str = "udp"
    remote: tuple[str, int] = REMOTE
    srv: bool = True

    def id(self) -> str:
        return f"{wire_length(self.labels)} octets {self.proto} {self.remote[0]}"


CASES = [
    Case(labels=(b"example", b"org")),
    Case(labels=(b"example", b"org"), proto="tcp", remote=("2001:db8::1", 5300)),
    Case(labels=(b"x\x84", b"Example", b"NET")),  # odd bytes and letter case kept
    Case(labels=()),  # the root: `_udp.`
    Case(labels=long_name(250)),  # `_udp.` makes 255: still a name
    Case(labels=long_name(251), srv=False),  # 256: over the limit, no SRV
    Case(labels=long_name(255), srv=False),
    Case(labels=long_name(252), proto="tcp", srv=False),
]


@pytest.mark.parametrize("case", CASES, ids=Case.id)
async def test_serve(case: Case) -> None:
    req = request_for(case.labels, proto=case.proto, remote=case.remote)
    w = RecordingWriter(req)
    assert await Whoami().serve(req, w) == rc.NOERROR
    reply = parse_message(w.sent[0])
    assert reply.header.rcode == rc.NOERROR and reply.header.aa and not reply.rr
    address, *rest = reply.ar
    assert tuple(address.rname.label) == case.labels
    assert address.rtype == (rc.AAAA if ":" in case.remote[0] else rc.A)
    assert str(address.rdata) == case.remote[0] and address.ttl == 0
    if not case.srv:
        assert rest == []
        return
    (srv,) = rest
    assert tuple(srv.rname.label) == (f"_{case.proto}".encode(), *case.labels)
    assert wire_length(tuple(srv.rname.label)) <= MAX_NAME
    assert (srv.rtype, srv.rdata.port, str(srv.rdata.target), srv.ttl) == (
        rc.SRV,
        case.remote[1],
        ".",
        0,
    )


async def test_a_name_of_255_octets_is_answered_without_a_panic() -> None:
    query = DNSRecord(DNSHeader(id=9, rd=1), q=DNSQuestion(DNSLabel(long_name(255)), int(QTYPE.A)))
    async with running_server(".:0 {\n    whoami\n}\n") as server:
        reply = DNSRecord.parse(await udp_exchange(server.port(), bytes(query.pack())))
        panics = server.config.process.metrics.panics.get()
    assert panics == 0
    assert reply.header.rcode == rc.NOERROR and [r.rtype for r in reply.ar] == [rc.A]
