"""Shared test helpers: table-driven DNS cases, a recording writer, chains built from Corefiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dnslib import EDNS0, QTYPE, RR, DNSRecord

from clusterdns.chain.build import Block, Config, build
from clusterdns.chain.fastpath import Generations
from clusterdns.chain.handler import Handler
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.setup import ProcessContext
from clusterdns.chain.writer import Writer
from clusterdns.corefile import parse
from clusterdns.dnsutil import rcode as rc
from clusterdns.metrics import Metrics
from clusterdns.plugins import SETUP
from clusterdns.webserver import HTTPRegistry

REMOTE = ("10.240.0.1", 40212)
LOCAL = ("127.0.0.1", 53)


def rrs(*lines: str) -> list[str]:
    """Normalise zone-file lines to dnslib's text form (sorted by the caller when order is free)."""
    out: list[str] = []
    for line in lines:
        out.extend(str(r) for r in RR.fromZone(line))
    return out


@dataclass(frozen=True, kw_only=True)
class Case:
    """One query and the reply expected for it; sections compare as zone-file text."""

    qname: str
    qtype: str = "A"
    rcode: str = "NOERROR"
    answer: Sequence[str] = ()
    ns: Sequence[str] = ()
    extra: Sequence[str] = ()
    flags: str | None = None
    """Space-separated header flags that must be exactly the set ones, e.g. "qr aa rd"."""
    ordered: bool = False

    def id(self) -> str:
        return f"{self.qname} {self.qtype}"

    def request(self, *, proto: str = "udp", remote: tuple[str, int] = REMOTE) -> Request:
        return make_request(self.qname, self.qtype, proto=proto, remote=remote)

    def check(self, msg: DNSRecord | None) -> None:
        assert msg is not None, f"{self.id()}: no reply written"
        got_rcode = rc.rcode_name(int(msg.header.rcode))
        assert got_rcode == self.rcode, f"{self.id()}: rcode {got_rcode}, want {self.rcode}\n{msg}"
        for section, want, got in (
            ("answer", self.answer, msg.rr),
            ("authority", self.ns, msg.auth),
            ("additional", self.extra, [r for r in msg.ar if r.rtype != 41]),
        ):
            want_text = rrs(*want)
            got_text = [str(r) for r in got]
            if not self.ordered:
                want_text, got_text = sorted(want_text), sorted(got_text)
            assert got_text == want_text, (
                f"{self.id()}: {section}\n got {got_text}\nwant {want_text}"
            )
        if self.flags is not None:
            assert flags_of(msg) == set(self.flags.split()), f"{self.id()}: flags {flags_of(msg)}"


def flags_of(msg: DNSRecord) -> set[str]:
    h = msg.header
    return {
        n
        for n, v in (
            ("qr", h.qr),
            ("aa", h.aa),
            ("tc", h.tc),
            ("rd", h.rd),
            ("ra", h.ra),
            ("ad", h.ad),
            ("cd", h.cd),
        )
        if v
    }


def make_request(
    qname: str,
    qtype: str = "A",
    *,
    proto: str = "udp",
    remote: tuple[str, int] = REMOTE,
    edns_size: int | None = None,
    do: bool = False,
) -> Request:
    q = DNSRecord.question(qname, qtype)
    if edns_size is not None:
        q.add_ar(EDNS0(udp_len=edns_size, flags="do" if do else ""))
    wire = q.pack()
    return Request(
        DNSRecord.parse(wire), wire, proto=proto, remote=remote, local=LOCAL, server="dns://:53"
    )


@dataclass
class RecordingWriter(Writer):
    """A server writer that keeps the sent bytes instead of sending them."""

    sent: list[bytes] = field(default_factory=list)

    def __init__(self, req: Request) -> None:
        self.sent = []
        super().__init__(req, self.sent.append)

    def reply(self) -> DNSRecord | None:
        return DNSRecord.parse(self.sent[0]) if self.sent else None


def new_process() -> ProcessContext:
    return ProcessContext(metrics=Metrics(), http=HTTPRegistry(), generations=Generations())


def build_config(corefile: str, *, dns_port: int = 53, file: str = "Corefile") -> Config:
    """Parse and set up a Corefile the way the server does (nothing is started)."""
    blocks = parse(corefile, file, DIRECTIVES)
    return build(blocks, specs=SETUP, dns_port=dns_port, process=new_process())


def first_block(corefile: str) -> Block:
    return build_config(corefile).blocks[0]


async def serve(block: Block, req: Request) -> tuple[int, RecordingWriter]:
    """Run one request through a block's chain; returns (rcode, writer)."""
    assert block.head is not None
    w = RecordingWriter(req)
    code = await block.head.serve(req, w)
    return code, w


def qtype_code(name: str) -> int:
    return int(getattr(QTYPE, name))


# -- end to end: the real server on loopback ---------------------------------------------------

import asyncio  # noqa: E402
import shutil  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager, suppress  # noqa: E402

from clusterdns.server.lifecycle import Server  # noqa: E402
from clusterdns.server.tcp import TCPLimits  # noqa: E402

TIMEOUT_S = 5.0


@asynccontextmanager
async def running_server(
    corefile: str,
    *,
    limits: TCPLimits | None = None,
    max_inflight: int = 10_000,
    head: Handler | None = None,
    fastpath: bool | None = None,
) -> AsyncIterator[Server]:
    """Start the real server from Corefile text (use port 0 keys) and stop it afterwards.

    `head` replaces the first block's chain with a test handler.
    """
    config = build_config(corefile)
    if head is not None:
        config.blocks[0].head = head
    if fastpath is not None:
        config.blocks[0].fastpath = fastpath
    server = Server(config, quiet=True, limits=limits, max_inflight=max_inflight)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(graceful=False)


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


@asynccontextmanager
async def udp_client(
    port: int, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[asyncio.DatagramTransport, _Collector]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Collector, remote_addr=(host, port))
    try:
        yield transport, proto
    finally:
        transport.close()


async def udp_exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send one datagram and wait for one reply."""
    async with udp_client(port, host) as (transport, proto):
        transport.sendto(data)
        return await asyncio.wait_for(proto.queue.get(), TIMEOUT_S)


async def udp_replies_before_probe(port: int, data: bytes) -> list[bytes]:
    """Send `data`, then a valid probe query; return every reply that arrived before the probe's.

    Replies to one client are sent in order, so an empty list proves `data` got no reply without
    waiting on a timer.
    """
    probe = DNSRecord.question("probe.example.", "A")
    probe.header.id = 0xBEEF
    async with udp_client(port) as (transport, proto):
        transport.sendto(data)
        transport.sendto(probe.pack())
        before: list[bytes] = []
        while True:
            reply = await asyncio.wait_for(proto.queue.get(), TIMEOUT_S)
            if reply[:2] == b"\xbe\xef" and reply[2:] and len(reply) > 12 and b"probe" in reply:
                return before
            before.append(reply)


async def tcp_exchange(port: int, *messages: bytes, host: str = "127.0.0.1") -> list[bytes]:
    """Send messages pipelined on one TCP connection; return the replies in arrival order."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
    try:
        writer.write(b"".join(len(m).to_bytes(2, "big") + m for m in messages))
        await writer.drain()
        out: list[bytes] = []
        for _ in messages:
            size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TIMEOUT_S), "big")
            out.append(await asyncio.wait_for(reader.readexactly(size), TIMEOUT_S))
        return out
    finally:
        writer.close()


async def dig(port: int, *args: str) -> str:
    """Run the real `dig` against 127.0.0.1:port and return its output."""
    exe = shutil.which("dig")
    assert exe is not None, "dig is not installed (scripts/test installs bind9-dnsutils)"
    proc = await asyncio.create_subprocess_exec(
        exe,
        "@127.0.0.1",
        "-p",
        str(port),
        "+tries=1",
        "+time=5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode()


# -- HTTP side listeners (health, ready, prometheus) on loopback --------------------------------


@dataclass(frozen=True)
class HttpReply:
    """One HTTP response as it came off the wire."""

    status: int
    headers: dict[str, str]
    """Header names lower-cased, values stripped."""
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def status_body(self) -> tuple[int, bytes]:
        """(status, body), for compact assertions."""
        return (self.status, self.body)


async def http_get(
    port: int,
    path: str,
    *,
    method: str = "GET",
    host: str = "127.0.0.1",
    timeout_s: float = TIMEOUT_S,
) -> HttpReply:
    """One HTTP/1.1 request with `Connection: close` to host:port (IPv6 literals allowed), read to
    EOF; connecting, sending and reading are together bounded by `timeout_s`."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request.encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in header_lines)
    }
    return HttpReply(int(status_line.split()[1]), headers, body)
