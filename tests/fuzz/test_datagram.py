"""`Responder.datagram` (the fuzz harness's UDP path) treats a query as the UDP listener does."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from dnslib import EDNS0, RR, A, DNSRecord

from clusterdns.chain.fastpath import FastPath, Generations
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.metrics import Metrics
from clusterdns.server.mux import Mux
from clusterdns.server.responder import (
    MAX_UDP_REPLY,
    UDP_QUERY_BUFFER,
    Responder,
    cap_advertised_size,
    udp_query,
)
from tests.dnstest import LOCAL, REMOTE, first_block


class _Big:
    """Answers with 400 A records (about 6,400 bytes): more than any UDP reply may carry."""

    name: ClassVar[str] = "big"

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        reply = req.reply()
        for i in range(400):
            reply.add_answer(RR(req.owner, rc.A, rdata=A(f"10.0.{i // 256}.{i % 256}"), ttl=60))
        w.write(reply, self.name)
        return rc.NOERROR


def query(size: int | None) -> bytes:
    q = DNSRecord.question("big.example.org.", "A")
    if size is not None:
        q.add_ar(EDNS0(udp_len=size))
    return bytes(q.pack())


@pytest.mark.parametrize(
    "size,limit", [(None, 512), (1232, 1232), (4096, 4096), (8192, 4096), (65535, 4096)]
)
async def test_udp_replies_are_capped_at_4096_bytes(size: int | None, limit: int) -> None:
    block = first_block(".:53 {\n    whoami\n}\n")
    block.head = _Big()
    responder = Responder(
        mux=Mux({".": block}),
        fastpath=FastPath(Generations()),
        metrics=Metrics(),
        server="dns://:53",
    )
    sent: list[bytes] = []
    responder.datagram(query(size), REMOTE, LOCAL, sent.append)
    await asyncio.wait_for(asyncio.gather(*responder.tasks), 5)
    (reply,) = sent
    assert len(reply) <= limit and len(reply) > limit - 40, len(reply)
    assert DNSRecord.parse(reply).header.tc == 1


@pytest.mark.parametrize("size", [None, 0, 512, 4096, 4097, 65535])
def test_udp_query_caps_the_advertised_size(size: int | None) -> None:
    data = query(size)
    assert cap_advertised_size(data, MAX_UDP_REPLY) == udp_query(data)


def test_udp_query_is_cut_to_the_read_buffer() -> None:
    data = query(65535) + b"\x00" * 600
    assert len(udp_query(data)) == UDP_QUERY_BUFFER
