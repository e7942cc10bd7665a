"""The real server, reloadable, in process: wired as the command line wires it.

A test writes the Corefile, then drives the `reload` plugin's check itself (`Running.check`) or
calls the SIGUSR1 path (`Running.reloading.reload()`); nothing waits on a timer. A `Gate` holds a
reload half-way (after the new configuration's start-up hooks, before the switch) so that a test
can look at the server while both configurations exist.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dnslib import DNSRecord

from clusterdns.chain.build import Config
from clusterdns.chain.setup import Resources
from clusterdns.cli import CorefileSource, setup_blocks
from clusterdns.corefile import ServerBlock
from clusterdns.metrics import Metrics
from clusterdns.plugins.reload import Poller, poller_of
from clusterdns.server.lifecycle import Server
from clusterdns.server.logfmt import CoreDNSFormatter
from clusterdns.server.reloader import Reloading
from tests.dnstest import udp_exchange

FORMAT = CoreDNSFormatter()


@dataclass
class Gate:
    """A start-up hook appended to every reloaded configuration: it waits to be released."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self) -> None:
        self.entered.set()
        await self.release.wait()


@dataclass
class Running:
    server: Server
    reloading: Reloading
    path: Path
    metrics: Metrics
    lameduck_waits: list[float]

    @property
    def config(self) -> Config:
        return self.server.config

    @property
    def poller(self) -> Poller:
        poller = poller_of(self.server.config.process.reloader)
        assert poller is not None, "the running configuration has no reload poller"
        return poller

    async def check(self) -> bool:
        """One check of the running configuration's `reload` poller."""
        return await self.poller.check()

    def write(self, text: str) -> None:
        """Replace the Corefile atomically (as editors and the kubelet do)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)

    @property
    def dns_port(self) -> int:
        return self.server.port()

    def side_port(self, address: str) -> int:
        return self.server.config.process.http.listeners[address].port

    async def query(self, name: str, qtype: str = "A") -> DNSRecord:
        wire = await udp_exchange(self.dns_port, DNSRecord.question(name, qtype).pack())
        return DNSRecord.parse(wire)

    def scrape(self) -> str:
        return self.metrics.exposition().decode()


def answers(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


@asynccontextmanager
async def running(
    path: Path,
    corefile: str,
    *,
    gate: Gate | None = None,
    tweak: Callable[[Config], None] | None = None,
) -> AsyncIterator[Running]:
    """Write `corefile` to `path`, start the server on it; stop it on exit.

    `tweak` is applied to every configuration reloads set up (e.g. to count hooks).
    """
    path.write_text(corefile)
    source = CorefileSource(str(path), 53)
    metrics = Metrics()

    def setup(
        blocks: list[ServerBlock], reloading: Reloading, previous: Resources | None
    ) -> Config:
        config = setup_blocks(blocks, 53, metrics, reloading=reloading, previous=previous)
        if tweak is not None:
            tweak(config)
        if gate is not None:
            config.process.startup.append(gate.hook)
        return config

    reloading = Reloading(source.read, setup)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    server = Server(
        setup_blocks(source.parse(source.load()), 53, metrics, reloading=reloading),
        quiet=True,
        sleep=sleep,
    )
    reloading.attach(server)
    await server.start()
    try:
        yield Running(server, reloading, path, metrics, waits)
    finally:
        await server.stop(graceful=False)


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Captured records as the process prints them."""
    return [FORMAT.format(r) for r in caplog.records]


def capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clusterdns")


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Yield to the loop until `predicate()` holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0)
