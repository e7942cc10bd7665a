"""TCP bounds: connection cap, read and idle timeouts; a slow client costs only its connection."""

from __future__ import annotations

import asyncio

from dnslib import DNSRecord

from clusterdns.server.tcp import TCPLimits
from tests.dnstest import TIMEOUT_S, running_server, tcp_exchange

WHOAMI = ".:0 {\n    whoami\n}\n"
QUERY = bytes(DNSRecord.question("example.org", "A").pack())


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Wait until the server closes the connection (EOF or reset)."""
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT_S) == b""
    except ConnectionResetError:
        return True


async def test_connection_cap_refuses_extra_connections() -> None:
    async with running_server(WHOAMI, limits=TCPLimits(max_connections=2)) as server:
        port = server.port()
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        # Make sure both are accepted before the third arrives.
        for reader, writer in conns:
            writer.write(len(QUERY).to_bytes(2, "big") + QUERY)
            size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TIMEOUT_S), "big")
            await reader.readexactly(size)
        reader3, writer3 = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader3)
        assert server.config.process.metrics.dropped.get(("tcp_connections",)) == 1
        for _, writer in [*conns, (reader3, writer3)]:
            writer.close()
        # Once a slot frees up, new connections are served again.
        while server.connections.open > 0:
            await asyncio.sleep(0.01)
        (reply,) = await tcp_exchange(port, QUERY)
        assert DNSRecord.parse(reply).header.rcode == 0


async def test_silent_connection_is_closed_after_read_timeout() -> None:
    limits = TCPLimits(read_timeout_s=0.2, idle_timeout_s=0.2)
    async with running_server(WHOAMI, limits=limits) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port())
        assert await closed_by_server(reader)
        writer.close()


async def test_idle_connection_is_closed_after_last_answer() -> None:
    limits = TCPLimits(read_timeout_s=5, idle_timeout_s=0.2)
    async with running_server(WHOAMI, limits=limits) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port())
        writer.write(len(QUERY).to_bytes(2, "big") + QUERY)
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TIMEOUT_S), "big")
        assert DNSRecord.parse(await reader.readexactly(size)).header.rcode == 0
        assert await closed_by_server(reader)
        writer.close()


async def test_slowloris_does_not_block_other_clients() -> None:
    limits = TCPLimits(read_timeout_s=0.3, idle_timeout_s=0.3)
    async with running_server(WHOAMI, limits=limits) as server:
        port = server.port()
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"\x00\x40\x12")  # announces 64 bytes, sends one
        (reply,) = await tcp_exchange(port, QUERY)
        assert DNSRecord.parse(reply).header.rcode == 0
        assert await closed_by_server(slow_reader)
        slow_writer.close()


async def test_half_close_still_gets_answers() -> None:
    async with running_server(WHOAMI) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port())
        writer.write((len(QUERY).to_bytes(2, "big") + QUERY) * 3)
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), TIMEOUT_S)
        count = 0
        while data:
            size = int.from_bytes(data[:2], "big")
            assert DNSRecord.parse(data[2 : 2 + size]).header.rcode == 0
            data = data[2 + size :]
            count += 1
        assert count == 3
        writer.close()
