"""A burst of UDP queries that arrives while the server's event loop is busy elsewhere.

A reload's setup, a garbage collection or a CPU shared with other work stalls the loop for a
while; the queries that arrive meanwhile wait in the listening socket's receive buffer, and the
kernel drops what does not fit. The server asks for a large buffer (`udp.RECEIVE_BUFFER`,
deviation D40): the test checks it got what the host allows, and that a burst sized at 2 KiB of
that buffer per query (a query takes 832 bytes: 4,096 queries where `net.core.rmem_max` allows
4 MiB, 16 times what the default 208 KiB holds) is answered in full.

The stall is made exactly: the server runs on the test's own event loop, so while the test sends
the burst without yielding, the server reads nothing.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import Final, cast

from dnslib import DNSRecord

from clusterdns.server.udp import RECEIVE_BUFFER
from tests.dnstest import running_server

WAIT_S: Final = 60.0
PER_QUERY: Final = 2048
"""Receive-buffer bytes counted per query to size the burst: 832 on loopback, with a margin."""


def rmem_max() -> int:
    """The largest receive buffer an unprivileged setsockopt can get (before Linux doubles it)."""
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


async def test_a_burst_during_a_stalled_event_loop_waits_in_the_receive_buffer() -> None:
    async with running_server(".:0 {\n    bind 127.0.0.1\n    whoami\n}\n") as server:
        (transport,) = next(iter(server.listeners.values())).udp
        sock = cast(socket.socket, transport.get_extra_info("socket"))
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= min(RECEIVE_BUFFER, rmem_max()), (granted, rmem_max())
        burst = granted // PER_QUERY  # 4,096 with rmem_max >= 4 MiB; 208 with the 208 KiB default

        loop = asyncio.get_running_loop()
        got: set[int] = set()
        done = asyncio.Event()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                got.add(struct.unpack_from("!H", data)[0])
                if len(got) == burst:
                    done.set()

        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        client.connect(("127.0.0.1", server.port()))
        out, _ = await loop.create_datagram_endpoint(Client, sock=client)
        try:
            # The stall: no await until every query of the burst is in the server's socket.
            for qid in range(burst):
                q = DNSRecord.question(f"q{qid}.example.org.", "A")
                q.header.id = qid
                out.sendto(bytes(q.pack()))
            await asyncio.wait_for(done.wait(), WAIT_S)
        finally:
            out.close()
        assert got == set(range(burst))
