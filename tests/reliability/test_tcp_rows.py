"""Rows T1-T7 of reliability.md (TCP), and the clients that must only cost their own connection:
slowloris, a client that never reads its replies, a half-open connection (network namespace),
a reset before the reply, and one address opening many connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
from dnslib import DNSRecord

from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.server.lifecycle import Server
from clusterdns.server.tcp import TCPLimits
from tests import netns
from tests.dnstest import TIMEOUT_S, running_server, tcp_exchange, udp_exchange
from tests.reliability.support import (
    BigRecord,
    closed_by_server,
    query,
    read_reply,
    tcp_connection,
    until,
)

WHOAMI = ".:0 {\n    whoami\n}\n"
QUERY = query("example.org.")


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def dropped(server: Server, reason: str) -> float:
    return server.config.process.metrics.dropped.get((reason,))


# -- T1: a length prefix too short for a DNS message -------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 11])
async def test_t1_short_length_prefix_closes_the_connection(length: int) -> None:
    async with running_server(WHOAMI) as server, tcp_connection(server.port()) as (r, w):
        # A query before it is still answered; nothing after it is read.
        w.write(framed(QUERY) + struct.pack("!H", length) + b"\x00" * length + framed(QUERY))
        assert DNSRecord.parse(await read_reply(r)).header.rcode == rc.NOERROR
        assert await closed_by_server(r)
        assert dropped(server, "tcp_short") == 1
        await until(lambda: server.connections.open == 0)


# -- T2: slowloris -----------------------------------------------------------------------------


async def test_t2_length_then_nothing_is_closed_at_the_read_deadline_and_counted() -> None:
    limits = TCPLimits(read_timeout_s=0.3, idle_timeout_s=30)
    async with running_server(WHOAMI, limits=limits) as server:
        async with tcp_connection(server.port()) as (r, w):
            w.write(b"\xff\xff")  # announces 65,535 bytes, sends none
            assert await closed_by_server(r)
        assert dropped(server, "tcp_read_timeout") == 1


async def test_t2_a_trickle_does_not_extend_the_read_deadline() -> None:
    limits = TCPLimits(read_timeout_s=0.5, idle_timeout_s=30)
    async with (
        running_server(WHOAMI, limits=limits) as server,
        tcp_connection(server.port()) as (r, w),
    ):
        w.write(b"\x00\x40")  # a 64-byte message follows, one byte every 50 ms (3.2 s)
        closed = asyncio.create_task(closed_by_server(r))
        sent = 0
        while sent < 63 and not closed.done():
            w.write(b"\x00")
            sent += 1
            await asyncio.wait({closed}, timeout=0.05)
        assert await closed
        # Bytes kept arriving, yet the message had to be complete within 0.5 s of its start.
        assert sent < 63
        assert dropped(server, "tcp_read_timeout") == 1


async def test_t2_a_connection_that_never_sends_is_closed_and_counted() -> None:
    limits = TCPLimits(read_timeout_s=0.2, idle_timeout_s=30)
    async with running_server(WHOAMI, limits=limits) as server:
        async with tcp_connection(server.port()) as (r, _):
            assert await closed_by_server(r)
        assert dropped(server, "tcp_read_timeout") == 1
        # An idle close after a served query is normal and not counted.
        async with tcp_connection(server.port()) as (r, w):
            w.write(framed(QUERY))
            await read_reply(r)
        assert dropped(server, "tcp_read_timeout") == 1


# -- T3: one byte per segment ------------------------------------------------------------------


async def test_t3_query_delivered_one_byte_per_segment_is_answered() -> None:
    async with running_server(WHOAMI) as server, tcp_connection(server.port()) as (r, w):
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in framed(query("OneByte.Example.", qid=0x7777)):
            w.write(bytes([byte]))
            await w.drain()
            await asyncio.sleep(0)
        reply = DNSRecord.parse(await read_reply(r))
    assert reply.header.id == 0x7777 and str(reply.q.qname) == "OneByte.Example."


# -- T4: pipelining is concurrent --------------------------------------------------------------


class Rendezvous:
    """Answers once `needed` queries are in flight at the same time (serial handling deadlocks)."""

    name: ClassVar[str] = "rendezvous"

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self.waiting = 0
        self.all_here = asyncio.Event()

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.waiting += 1
        if self.waiting >= self.needed:
            self.all_here.set()
        await self.all_here.wait()
        reply = req.reply()
        w.write(reply, self.name)
        return 0


async def test_t4_100_pipelined_queries_answered_concurrently_with_their_ids() -> None:
    messages = []
    for i in range(100):
        messages.append(query(f"q{i}.example.", qid=5000 + i))
    async with running_server(WHOAMI, head=Rendezvous(50)) as server:
        replies = await tcp_exchange(server.port(), *messages)
    got = {DNSRecord.parse(m).header.id: str(DNSRecord.parse(m).q.qname) for m in replies}
    assert got == {5000 + i: f"q{i}.example." for i in range(100)}


# -- T5: the client goes away before its replies -----------------------------------------------


class Gate:
    name: ClassVar[str] = "gate"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.entered += 1
        await self.open.wait()
        w.write(req.reply(), self.name)
        return 0


async def test_t5_reset_before_the_replies_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    caplog.set_level(logging.WARNING)
    async with running_server(WHOAMI, head=gate) as server:
        responder = next(iter(server.listeners.values())).responder
        async with tcp_connection(server.port()) as (_, w):
            w.write(b"".join(framed(query(f"r{i}.example.")) for i in range(10)))
            await until(lambda: gate.entered == 10)
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await until(lambda: server.connections.open == 0)
        gate.open.set()
        await until(lambda: not responder.tasks)
        reply = DNSRecord.parse(await udp_exchange(server.port(), QUERY))
        assert reply.header.rcode == rc.NOERROR
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- T6: many connections from one address -----------------------------------------------------


async def test_t6_per_client_cap_idle_close_and_udp_unaffected() -> None:
    limits = TCPLimits(max_connections_per_client=4, idle_timeout_s=0.5, read_timeout_s=5)
    async with running_server(WHOAMI, limits=limits) as server:
        port = server.port()
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(tcp_connection(port)) for _ in range(10)]
            served = 0
            for _, w in conns:
                w.write(framed(QUERY))
            for r, _ in conns:
                try:
                    await read_reply(r)
                    served += 1
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    pass
            assert served == 4
            assert dropped(server, "tcp_client_connections") == 6
            # Another address is not affected, nor is UDP.
            async with tcp_connection(port, local="127.0.0.2") as (r2, w2):
                w2.write(framed(QUERY))
                assert DNSRecord.parse(await read_reply(r2)).header.rcode == rc.NOERROR
            assert DNSRecord.parse(await udp_exchange(port, QUERY)).header.rcode == rc.NOERROR
            # The idle ones are closed by the server; then the address may connect again.
            await until(lambda: server.connections.open == 0)
            assert server.connections.per_client == {}
        (reply,) = await tcp_exchange(port, QUERY)
        assert DNSRecord.parse(reply).header.rcode == rc.NOERROR


# -- T7: a long-lived connection ---------------------------------------------------------------


async def test_t7_thousands_of_queries_on_one_connection() -> None:
    total, window = 3000, 50
    async with running_server(WHOAMI) as server, tcp_connection(server.port()) as (r, w):
        seen: set[int] = set()
        for start in range(0, total, window):
            w.write(b"".join(framed(query(qid=i)) for i in range(start, start + window)))
            for _ in range(window):
                seen.add(DNSRecord.parse(await read_reply(r)).header.id)
    assert seen == set(range(total))


# -- a client that never reads its replies -----------------------------------------------------


def never_reading_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny receive window
    sock.setblocking(False)
    return sock


async def test_client_that_never_reads_its_replies_is_cut_at_the_write_deadline() -> None:
    limits = TCPLimits(write_timeout_s=0.5, idle_timeout_s=30, read_timeout_s=30)
    answers = BigRecord(3_000)
    async with running_server(WHOAMI, limits=limits, head=answers) as server:
        port = server.port()
        loop = asyncio.get_running_loop()
        with never_reading_socket() as sock:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            # 3,000 queries of 29 bytes whose 9 MB of replies the client never reads.
            await loop.sock_sendall(sock, b"".join(framed(query(qid=i)) for i in range(3000)))
            # Meanwhile other clients are served, over TCP and UDP.
            (reply,) = await tcp_exchange(port, query("other.example."))
            assert DNSRecord.parse(reply).header.rcode == rc.NOERROR
            assert DNSRecord.parse(await udp_exchange(port, QUERY)).header.rcode == rc.NOERROR
            await until(lambda: dropped(server, "tcp_write_timeout") == 1)
            await until(lambda: server.connections.open == 0)
            # Reading stopped while writes were stuck: the rest of the backlog was never read,
            # so what it cost is bounded by the connection, not by what the client sent.
            assert answers.served < 3000


class Held:
    """Answers `held*` names with 60 kB once `release` is set, other names with 3 kB at once."""

    name: ClassVar[str] = "held"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.large = BigRecord(60_000)
        self.small = BigRecord(3_000)

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        if req.name.startswith("held"):
            await self.release.wait()
            return await self.large.serve(req, w)
        return await self.small.serve(req, w)


async def test_replies_piling_up_past_one_mib_cut_the_connection_at_once() -> None:
    limits = TCPLimits(write_timeout_s=30, idle_timeout_s=30, read_timeout_s=30, max_pipeline=128)
    answers = Held()
    async with running_server(WHOAMI, limits=limits, head=answers) as server:
        listener = next(iter(server.listeners.values()))
        loop = asyncio.get_running_loop()
        with never_reading_socket() as sock:
            await loop.sock_connect(sock, ("127.0.0.1", server.port()))
            # 40 queries held in flight, then enough small answers to back the writes up (the
            # 9 MB of them fill the kernel's buffers; reading stops before 1 MiB is queued).
            held = [framed(query(f"held{i}.example.", qid=i)) for i in range(40)]
            filler = [framed(query(f"fill{i}.example.", qid=100 + i)) for i in range(3000)]
            await loop.sock_sendall(sock, b"".join(held + filler))
            await until(lambda: any(c.write_blocked for c in listener.conns))
            assert dropped(server, "tcp_backlog") == 0
            # The 40 held replies (2.4 MB) now land on a connection that does not drain.
            answers.release.set()
            await until(lambda: dropped(server, "tcp_backlog") == 1)
            await until(lambda: server.connections.open == 0)
            assert dropped(server, "tcp_write_timeout") == 0


# -- a half-open connection: the client's network goes away (network namespace) ---------------

CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
q = bytes.fromhex(sys.argv[3])
s.sendall(len(q).to_bytes(2, "big") + q)
n = int.from_bytes(s.recv(2), "big")
data = b""
while len(data) < n:
    data += s.recv(n - len(data))
if sys.argv[4] == "partial":
    s.sendall(b"\\x00\\x40\\x12")
print("ready", flush=True)
time.sleep(600)
"""


@contextlib.asynccontextmanager
async def veth_pair(ns: netns.NetNS) -> AsyncIterator[tuple[str, str, str]]:
    """A veth link from this namespace into `ns`; yields (our device, our IP, their IP)."""
    third = secrets.randbelow(250) + 1
    ours, theirs = f"198.18.{third}.1", f"198.18.{third}.2"
    dev = f"vr{secrets.token_hex(3)}"
    peer = f"vn{secrets.token_hex(3)}"
    await netns._ip("link", "add", dev, "type", "veth", "peer", "name", peer)
    try:
        await netns._ip("link", "set", peer, "netns", ns.name)
        await netns._ip("addr", "add", f"{ours}/30", "dev", dev)
        await netns._ip("link", "set", dev, "up")
        await netns._ip("-n", ns.name, "addr", "add", f"{theirs}/30", "dev", peer)
        await netns._ip("-n", ns.name, "link", "set", peer, "up")
        yield dev, ours, theirs
    finally:
        await netns._ip("link", "delete", dev, check=False)


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
@pytest.mark.parametrize("state", ["idle", "partial"])
async def test_half_open_connection_is_closed_by_the_deadlines(state: str) -> None:
    limits = TCPLimits(read_timeout_s=0.5, idle_timeout_s=0.5, write_timeout_s=0.5)
    async with (
        running_server(WHOAMI, limits=limits) as server,
        netns.network_namespace() as ns,
        veth_pair(ns) as (dev, ours, _),
    ):
        client = await ns.spawn(
            sys.executable,
            "-c",
            CLIENT,
            ours,
            str(server.port()),
            QUERY.hex(),
            state,
            cwd=Path(__file__).resolve().parent,
        )
        await netns.read_line(client, lambda line: line == "ready", timeout_s=TIMEOUT_S)
        assert server.connections.open == 1
        # The client's network vanishes: no FIN, no RST will ever arrive.
        await netns._ip("link", "set", dev, "down")
        (reply,) = await tcp_exchange(server.port(), QUERY)
        assert DNSRecord.parse(reply).header.rcode == rc.NOERROR
        await until(lambda: server.connections.open == 0)
        want = 1 if state == "partial" else 0
        assert dropped(server, "tcp_read_timeout") == want
