"""Overload (reliability.md P2, R10): work in flight and the UDP write backlog are bounded, what
does not fit is shed and counted, and `/health` keeps answering during a flood."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import ClassVar, cast

from dnslib import DNSRecord

from clusterdns.chain.fastpath import FastPath, Offer
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.server.mux import Mux
from clusterdns.server.responder import Responder
from clusterdns.server.udp import MAX_WRITE_BACKLOG, UDPProtocol
from tests.dnstest import TIMEOUT_S, build_config, running_server, udp_exchange
from tests.reliability.support import query, until

FLOOD_LIMIT = 200_000
"""Most datagrams one flood sends (it normally stops long before, when the test has seen enough)."""


class Stalled:
    """Holds every query until `release` is set, then answers."""

    name: ClassVar[str] = "stalled"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        await self.release.wait()
        w.write(req.reply(), self.name)
        return 0


class Flood(threading.Thread):
    """Sends distinct UDP queries to the server as fast as it can, until stopped or the limit."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", self.port))
            sock.setblocking(False)
            packets = [query(f"f{i}.example.", qid=i) for i in range(1024)]
            while not self.stop.is_set() and self.sent < FLOOD_LIMIT:
                try:
                    sock.send(packets[self.sent % 1024])
                except BlockingIOError:
                    self.stop.wait(0.001)  # the socket buffer is full: let the server read
                    continue
                self.sent += 1


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(TIMEOUT_S):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_flood_is_shed_and_counted_while_health_answers() -> None:
    corefile = ".:0 {\n    health 127.0.0.1:0\n    whoami\n}\n"
    stalled = Stalled()
    async with running_server(corefile, head=stalled, max_inflight=100) as server:
        health = server.config.process.http.listeners["127.0.0.1:0"].port
        metrics = server.config.process.metrics
        responder = next(iter(server.listeners.values())).responder
        flood = Flood(server.port())
        flood.start()
        try:
            await until(lambda: metrics.dropped.get(("overload",)) >= 1000, timeout_s=30)
            assert len(responder.tasks) == 100  # never more work than the cap
            loop = asyncio.get_running_loop()
            shed = metrics.dropped.get(("overload",))

            async def health_check() -> float:
                started = loop.time()
                assert await http_get(health, "/health") == (200, b"OK")
                return loop.time() - started

            # Health checks, while the server keeps reading (and shedding) the flood.
            shedding = asyncio.create_task(
                until(lambda: metrics.dropped.get(("overload",)) >= shed + 1000, 30)
            )
            waits = await asyncio.gather(*(health_check() for _ in range(3)))
            await shedding
            assert all(w < 2.0 for w in waits), waits
            assert flood.is_alive()
        finally:
            flood.stop.set()
            await asyncio.to_thread(flood.join, TIMEOUT_S)
        stalled.release.set()
        await until(lambda: not responder.tasks)
        # Back to normal once the flood is over.
        reply = DNSRecord.parse(await udp_exchange(server.port(), query()))
        assert reply.header.rcode == rc.NOERROR
        assert metrics.dropped.get(("overload",)) + 100 <= flood.sent


class FakeTransport:
    """A datagram transport whose write buffer is as full as the test says."""

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.sent: list[bytes] = []

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 53) if name == "sockname" else None

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append(data)


async def test_udp_write_backlog_sheds_replies_and_counts_them() -> None:
    config = build_config(".:53 {\n    whoami\n}\n")
    metrics = config.process.metrics
    responder = Responder(
        mux=Mux(next(iter(config.listeners.values()))),
        fastpath=FastPath(config.process.generations),
        metrics=metrics,
        server="dns://:53",
    )
    proto = UDPProtocol(responder, metrics)
    transport = FakeTransport(backlog=MAX_WRITE_BACKLOG + 1)
    proto.connection_made(cast(asyncio.BaseTransport, transport))
    proto.datagram_received(query(), ("10.0.0.1", 4000))
    await until(lambda: not responder.tasks)
    assert transport.sent == [] and metrics.dropped.get(("udp_backlog",)) == 1
    transport.backlog = 0
    proto.datagram_received(query(), ("10.0.0.1", 4000))
    await until(lambda: not responder.tasks)
    assert len(transport.sent) == 1 and metrics.dropped.get(("udp_backlog",)) == 1
    # A fast-path hit is shed the same way.
    slot = config.process.generations.slot("test")
    responder.fastpath.offer(query()[2:], transport.sent[0], Offer(slot, 0))
    transport.backlog = MAX_WRITE_BACKLOG + 1
    proto.datagram_received(query(), ("10.0.0.1", 4000))
    assert len(transport.sent) == 1 and metrics.dropped.get(("udp_backlog",)) == 2
    transport.backlog = 0
    proto.datagram_received(query(qid=0x4242), ("10.0.0.1", 4000))
    assert not responder.tasks and transport.sent[-1][:2] == b"\x42\x42"
