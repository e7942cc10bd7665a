"""Shared pieces of the reliability tests: raw packet builders and the cluster Corefile they use.

The tests start the real server on loopback (tests/dnstest.py) and send it hand-built packets, so
every byte of a case is visible in the case itself.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar, Final

from dnslib import RD, RR, A, DNSRecord

from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from tests.dnstest import TIMEOUT_S

FIXTURES: Final = Path(__file__).resolve().parent.parent / "fixtures" / "k8s"
REFERENCE_YAML: Final = FIXTURES / "reference.yaml"

CLUSTER: Final = f""".:0 {{
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        from_yaml {REFERENCE_YAML}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    whoami
}}
"""
"""The kubeadm shape with the reference cluster (tests/fixtures/k8s); other names go to whoami."""

SERVICE: Final = "kubernetes.default.svc.cluster.local."
"""A Service of the reference cluster (ClusterIP 10.96.0.1)."""


def header(
    qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    """A DNS header; flags default to a plain query with RD."""
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def name(text: str) -> bytes:
    """A name in wire form, labels taken literally (no escapes)."""
    out = b""
    for label in text.rstrip(".").split(".") if text not in ("", ".") else []:
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def question(qname: str | bytes = "example.org.", qtype: int = 1, qclass: int = 1) -> bytes:
    """A question section entry; `qname` may be given in wire form."""
    wire = qname if isinstance(qname, bytes) else name(qname)
    return wire + struct.pack("!HH", qtype, qclass)


def opt(
    size: int = 1232,
    *,
    version: int = 0,
    flags: int = 0,
    options: bytes = b"",
    owner: bytes = b"\x00",
    ext_rcode: int = 0,
) -> bytes:
    """An OPT record; `flags` is the 16-bit EDNS flags field (0x8000 = DO)."""
    ttl = (ext_rcode << 24) | (version << 16) | flags
    return owner + struct.pack("!HHIH", 41, size, ttl, len(options)) + options


def option(code: int, data: bytes) -> bytes:
    """One EDNS option."""
    return struct.pack("!HH", code, len(data)) + data


def query(
    qname: str | bytes = "example.org.",
    qtype: int = 1,
    *,
    edns: bytes | None = None,
    qid: int = 0x1234,
    flags: int = 0x0100,
) -> bytes:
    """A whole query, optionally with an OPT record (built by `opt`)."""
    ar = 0 if edns is None else 1
    return header(qid, flags, ar=ar) + question(qname, qtype) + (edns or b"")


def opt_of(reply: DNSRecord) -> tuple[int, int, list[tuple[int, bytes]]] | None:
    """(udp size, ttl field, options) of a parsed reply's OPT record, or None."""
    found = [r for r in reply.ar if r.rtype == 41]
    if not found:
        return None
    (o,) = found
    return int(o.rclass), int(o.ttl), [(int(x.code), bytes(x.data)) for x in o.rdata or ()]


@asynccontextmanager
async def tcp_connection(
    port: int, host: str = "127.0.0.1", local: str | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """One TCP connection to the server, closed afterwards."""
    local_addr = (local, 0) if local is not None else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=local_addr), TIMEOUT_S
    )
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One length-prefixed reply."""
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TIMEOUT_S), "big")
    return await asyncio.wait_for(reader.readexactly(size), TIMEOUT_S)


async def closed_by_server(reader: asyncio.StreamReader, timeout_s: float = TIMEOUT_S) -> bool:
    """Wait until the server closes the connection (EOF or reset); False if it stays open."""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout_s)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def until(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    """Wait for `condition()` to hold, checking every few milliseconds, up to `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


class ManyRecords:
    """A test plugin answering every query with `count` A records (for size limits)."""

    name: ClassVar[str] = "many"

    def __init__(self, count: int) -> None:
        self.count = count

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        reply = req.reply(aa=True)
        for i in range(self.count):
            reply.add_answer(
                RR(req.qname, 1, rdata=A(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"), ttl=30)
            )
        w.write(reply, self.name)
        return 0


class BigRecord:
    """A test plugin answering every query with one record of `size` bytes (cheap to pack)."""

    name: ClassVar[str] = "big"

    def __init__(self, size: int) -> None:
        self.rdata = RD(b"\xab" * size)
        self.served = 0

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.served += 1
        reply = req.reply(aa=True)
        reply.add_answer(RR(req.qname, 65280, rdata=self.rdata, ttl=30))
        w.write(reply, self.name)
        return 0
