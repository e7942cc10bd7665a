"""A real server on loopback serving the reference cluster, with switches to compare its fast
path with its full chain: the same server, the same Store, so the SOA serial and every record are
the same on both sides."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from dnslib import EDNS0, DNSRecord, EDNSOption

from clusterdns.chain.build import Block
from clusterdns.chain.handler import Handler
from clusterdns.k8s.store import Store
from clusterdns.metrics import Metrics
from clusterdns.plugins.kubernetes.handler import Kubernetes
from clusterdns.plugins.loop.handler import Loop
from clusterdns.server.lifecycle import Server
from clusterdns.server.responder import Responder
from tests.dnstest import TIMEOUT_S, running_server, tcp_exchange, udp_exchange
from tests.plugins.kubernetes.cluster import REFERENCE_YAML
from tests.upstream import ScriptedUpstream, scripted_upstream

CACHE_NEW: Final = """cache 30 {
        disable success cluster.local
        disable denial cluster.local
    }"""
"""The cache line kubeadm writes since Kubernetes 1.32 (spec §0.3)."""


def kubeadm_corefile(
    upstream: str,
    *,
    files: tuple[Path, ...] = (REFERENCE_YAML,),
    options: str = "",
    cache: str | None = CACHE_NEW,
    log: bool = False,
) -> str:
    """The reference Corefile (spec §0.3) on loopback port 0, the cluster read from `files`.

    Side listeners bind 127.0.0.1:0 (all three share one HTTP listener); `health` has no
    lameduck so that stopping the test server does not wait; `reload` is left out (it does not
    change replies). `cache=None` drops the cache line.
    """
    paths = " ".join(str(f) for f in files)
    lines = [
        ".:0 {",
        "    bind 127.0.0.1 ::1",
        "    errors",
        "    log" if log else "",
        "    health 127.0.0.1:0",
        "    ready 127.0.0.1:0",
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
        f"        from_yaml {paths}",
        "        pods insecure",
        "        fallthrough in-addr.arpa ip6.arpa",
        "        ttl 30",
        f"        {options}",
        "    }",
        "    prometheus 127.0.0.1:0",
        f"    forward . {upstream} {{",
        "        max_concurrent 1000",
        "    }",
        f"    {cache}" if cache is not None else "",
        "    loop",
        "    loadbalance",
        "}",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def query(
    qname: str,
    qtype: str = "A",
    *,
    qid: int = 0x1234,
    rd: bool = True,
    cd: bool = False,
    ad: bool = False,
    edns: int | None = None,
    do: bool = False,
    options: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """Wire bytes of one query."""
    q = DNSRecord.question(qname, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    q.header.cd = int(cd)
    q.header.ad = int(ad)
    if edns is not None:
        opts = [EDNSOption(code, data) for code, data in options]
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else "", opts=opts))
    return bytes(q.pack())


def with_id(wire: bytes, qid: int) -> bytes:
    """The same message with another ID."""
    return qid.to_bytes(2, "big") + wire[2:]


@dataclass
class Rig:
    """The running server, its upstream and the switches."""

    server: Server
    upstream: ScriptedUpstream

    @property
    def block(self) -> Block:
        return self.server.config.blocks[0]

    @property
    def responders(self) -> list[Responder]:
        return [listener.responder for listener in self.server.listeners.values()]

    @property
    def metrics(self) -> Metrics:
        return self.server.config.process.metrics

    def port(self, host: str = "127.0.0.1") -> int:
        for key, listener in self.server.listeners.items():
            if key[1] == host:
                return listener.port
        raise LookupError(host)

    @property
    def hits(self) -> float:
        return self.metrics.fastpath_hits.get()

    def stored(self) -> int:
        return sum(len(r.fastpath) for r in self.responders)

    def clear(self) -> None:
        for responder in self.responders:
            responder.fastpath.clear()

    async def ask(self, wire: bytes, *, proto: str = "udp", host: str = "127.0.0.1") -> bytes:
        """One exchange with the server."""
        if proto == "tcp":
            return (await tcp_exchange(self.port(host), wire, host=host))[0]
        return await udp_exchange(self.port(host), wire, host=host)

    async def full_chain(
        self, wire: bytes, *, proto: str = "udp", host: str = "127.0.0.1"
    ) -> bytes:
        """The full chain's reply: prepared replies dropped and none stored meanwhile."""
        self.block.fastpath = False
        self.clear()
        try:
            return await self.ask(wire, proto=proto, host=host)
        finally:
            self.block.fastpath = True

    def kubernetes(self) -> Kubernetes:
        """The block's kubernetes handler (found by walking the chain)."""
        handler: Handler | None = self.block.head
        while handler is not None and not isinstance(handler, Kubernetes):
            handler = getattr(handler, "next", None)
        assert isinstance(handler, Kubernetes)
        return handler

    async def settled(self) -> None:
        """Wait until `loop` has had its start-up probe answered (it is counted like a query)."""
        handler: Handler | None = self.block.head
        while handler is not None and not isinstance(handler, Loop):
            handler = getattr(handler, "next", None)
        if handler is not None:
            await asyncio.wait_for(handler.finished.wait(), TIMEOUT_S)

    @property
    def store(self) -> Store:
        return self.kubernetes().store

    def scrape(self) -> dict[str, float]:
        """Every sample of the exposition, by its full text name with labels."""
        out: dict[str, float] = {}
        for line in self.metrics.exposition().decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
        return out


@asynccontextmanager
async def kubeadm_rig(*, fastpath: bool = True, **corefile: object) -> AsyncIterator[Rig]:
    """The reference Corefile served on loopback, its block's fast path switched on or off.

    The switch overrides the block's replay-safety (today `health`, `ready`, `forward` and
    `cache` do not declare it); the tests check what the fast path does once it is on.
    """
    async with scripted_upstream() as up:
        text = kubeadm_corefile(up.addr, **corefile)  # type: ignore[arg-type]
        async with running_server(text, fastpath=fastpath) as server:
            rig = Rig(server, up)
            await rig.settled()
            yield rig


SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})?$")


def family(sample: str) -> str:
    """The metric family of a sample name (`x_bucket{...}` -> `x`)."""
    m = SAMPLE.match(sample)
    assert m is not None, sample
    name = m.group("name")
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
