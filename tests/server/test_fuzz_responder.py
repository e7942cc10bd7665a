"""Property tests: random bytes and mutated queries never crash the responder or stop it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import dns.message
import pytest
from dnslib import EDNS0, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterdns.chain.fastpath import FastPath
from clusterdns.server.mux import Mux
from clusterdns.server.responder import Responder
from tests.dnstest import build_config

COREFILE = ".:53 {\n    any\n    bufsize 1232\n    whoami\n}\n"


@pytest.fixture(scope="module")
def harness() -> Iterator[tuple[asyncio.AbstractEventLoop, Responder]]:
    loop = asyncio.new_event_loop()
    config = build_config(COREFILE)
    zones = next(iter(config.listeners.values()))
    responder = Responder(
        mux=Mux(zones),
        fastpath=FastPath(config.process.generations),
        metrics=config.process.metrics,
        server="dns://:53",
    )
    yield loop, responder
    loop.close()


async def roundtrip(responder: Responder, data: bytes, proto: str) -> list[bytes]:
    sent: list[bytes] = []
    if proto == "udp":
        responder.datagram(data, ("10.0.0.1", 4000), ("127.0.0.1", 53), sent.append)
    else:
        responder.submit(data, "tcp", ("10.0.0.1", 4000), ("127.0.0.1", 53), sent.append)
    if responder.tasks:
        await asyncio.wait(set(responder.tasks), timeout=5)
    return sent


def valid_query(name: str, qtype: str, edns: bool) -> bytes:
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=4096))
    return bytes(q.pack())


def check_alive(loop: asyncio.AbstractEventLoop, responder: Responder) -> None:
    probe = valid_query("alive.example.org", "A", True)
    (reply,) = loop.run_until_complete(roundtrip(responder, probe, "udp"))
    msg = dns.message.from_wire(reply)
    assert msg.id == int.from_bytes(probe[:2], "big") and msg.rcode() == 0


def check_replies(data: bytes, replies: list[bytes]) -> None:
    assert len(replies) <= 1
    for reply in replies:
        assert len(reply) >= 12
        assert reply[:2] == data[:2]
        assert reply[2] & 0x80, "every reply has QR set"
        dns.message.from_wire(reply, ignore_trailing=True)  # every reply is a well-formed message


names = st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,20}){0,4}", fullmatch=True)
qtypes = st.sampled_from(["A", "AAAA", "ANY", "SRV", "TXT", "PTR", "MX", "CNAME", "SOA", "NS"])


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=600), proto=st.sampled_from(["udp", "tcp"]))
def test_random_bytes(
    harness: tuple[asyncio.AbstractEventLoop, Responder], data: bytes, proto: str
) -> None:
    loop, responder = harness
    replies = loop.run_until_complete(roundtrip(responder, data, proto))
    check_replies(data, replies)
    check_alive(loop, responder)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=names,
    qtype=qtypes,
    edns=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 600),
    tail=st.binary(max_size=40),
    proto=st.sampled_from(["udp", "tcp"]),
)
def test_mutated_queries(
    harness: tuple[asyncio.AbstractEventLoop, Responder],
    name: str,
    qtype: str,
    edns: bool,
    flips: list[tuple[int, int]],
    cut: int,
    tail: bytes,
    proto: str,
) -> None:
    loop, responder = harness
    data = bytearray(valid_query(name, qtype, edns))
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    mutated = bytes(data[: max(cut, 2)]) + tail
    replies = loop.run_until_complete(roundtrip(responder, mutated, proto))
    check_replies(mutated, replies)
    check_alive(loop, responder)
