"""health, ready and prometheus under the real server: start-up, lameduck, shutdown."""

from __future__ import annotations

import asyncio

import pytest
from dnslib import DNSRecord

from clusterdns.server.lifecycle import Server
from tests.dnstest import build_config, http_get, udp_exchange
from tests.plugins.health.test_health import the_health

COREFILE = """\
.:0 {
    health 127.0.0.1:0 {
        lameduck 5s
    }
    ready 127.0.0.1:0
    prometheus 127.0.0.1:0
    whoami
}
"""


async def test_lameduck_keeps_health_and_dns_while_ready_is_down() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        entered.set()
        await release.wait()

    config = build_config(COREFILE)
    health = the_health(config)
    server = Server(config, quiet=True, sleep=sleep)
    await server.start()
    stopping: asyncio.Task[None] | None = None
    try:
        http_port = config.process.http.listeners["127.0.0.1:0"].port
        dns_port = server.port()
        assert health.task is not None and not health.task.done()
        assert (await http_get(http_port, "/health")).status_body == (200, b"OK")
        assert (await http_get(http_port, "/ready")).status_body == (200, b"OK")

        stopping = asyncio.create_task(server.stop())
        async with asyncio.timeout(5):
            await entered.wait()
        assert waited == [5.0]
        # Lameduck: out of the Service endpoints, still healthy, still answering DNS.
        assert (await http_get(http_port, "/ready")).status_body == (503, b"Shutting down")
        assert (await http_get(http_port, "/health")).status_body == (200, b"OK")
        reply = DNSRecord.parse(
            await udp_exchange(dns_port, DNSRecord.question("example.org.", "A").pack())
        )
        assert reply.header.rcode == 0
        release.set()
        async with asyncio.timeout(10):
            await stopping
    finally:
        release.set()
        if stopping is None:
            await server.stop(graceful=False)
    assert health.task is None  # the shutdown hook cancelled the self-check
    with pytest.raises(OSError):
        await http_get(http_port, "/health")
