"""Upstream exchanges: one query out, one validated reply back, over UDP, TCP or TLS.

RFC 5452 is applied here: every attempt gets a fresh query ID from the OS CSPRNG; every UDP
attempt gets its own connected socket on a port drawn from it (so replies from any other address
or port never reach it); a reply is accepted only if its ID, QR bit and question (name compared
case-insensitively, type, class) match, and anything else is discarded while the wait goes on
until the read timeout. TCP and TLS connections are pooled per upstream (`ConnPool`), one query
at a time per connection. Errors carry the text CoreDNS's `errors` plugin would log
(`read udp 10.0.0.1:41234->10.0.0.2:53: i/o timeout`). Nothing here knows about health or policy.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dnslib import RR, DNSError, DNSRecord, EDNSOption
from dnslib.buffer import BufferError as DNSBufferError
from dnslib.label import DNSLabelError

from clusterdns.chain.request import Edns, Request, name_text
from clusterdns.chain.writer import copy_header
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.wire import HEADER, QR, WireError, skip_name, walk
from clusterdns.plugins.forward.config import TLSFiles, UpstreamAddr

DEFAULT_PORT_RANGE: Final = (32768, 60999)
PORT_RANGE_FILE: Final = "/proc/sys/net/ipv4/ip_local_port_range"
BIND_TRIES: Final = 8
"""Random source ports tried before letting the kernel choose one."""
DEFAULT_IDLE_CAP: Final = 128
"""Idle connections kept per upstream and protocol when `max_idle_conns` is 0."""
MAX_MESSAGE: Final = 65535

Discard = Callable[[str], None]
"""Called once per ignored reply with the reason: `id`, `question`, `source`, `malformed`,
`not_response`."""


class ExchangeError(Exception):
    """One upstream attempt failed; the text is what `errors` logs."""


class InvalidRequest(ExchangeError):
    """The client's message cannot be packed for upstream (answered FORMERR, as CoreDNS does)."""


class CachedConnClosed(ExchangeError):
    """A pooled connection had been closed by the upstream; retry on a fresh one."""


@dataclass(frozen=True, slots=True)
class Question:
    """What a reply's question must match: lower-case name, type and class."""

    name: str
    qtype: int
    qclass: int


class UpstreamQuery:
    """The client's query prepared for upstream: wire bytes whose ID is replaced per attempt."""

    __slots__ = ("_wire", "question")

    def __init__(self, wire: bytes, question: Question) -> None:
        self._wire = wire
        self.question = question

    @classmethod
    def from_request(cls, req: Request) -> UpstreamQuery:
        """The client's message as plugins left it, its OPT rebuilt from `req.edns` (bufsize).

        Raises:
            InvalidRequest: the message does not pack.
        """
        question = Question(req.name, req.qtype, req.qclass)
        wire = reused_wire(req)
        return cls(packed_wire(req) if wire is None else wire, question)

    @classmethod
    def probe(cls, domain: str, *, rd: bool) -> UpstreamQuery:
        """The health probe: `<domain> IN NS`, RD as configured."""
        msg = DNSRecord.question(domain, "NS")
        msg.header.rd = int(rd)
        return cls(bytes(msg.pack()), Question(domain.lower(), rc.NS, rc.IN))

    def with_id(self, qid: int) -> bytes:
        """The wire form with query ID `qid`."""
        return qid.to_bytes(2, "big") + self._wire[2:]


def opt_record(edns: Edns) -> RR:
    """An OPT record carrying `edns` (size, version, DO, options)."""
    ttl = (edns.version << 16) | (0x8000 if edns.do else 0)
    options = [EDNSOption(code, data) for code, data in edns.options]
    return RR(".", rc.OPT, rclass=edns.udp_size, ttl=ttl, rdata=options)


def reused_wire(req: Request) -> bytes | None:
    """The upstream query built from the client's own question bytes, for the usual query.

    The usual query has one question and at most an OPT record. `req.wire` holds the same
    question as `req.msg` (plugins that change the question, such as rewrite, build a new
    Request from new wire), so the header comes from `req.msg`, the question bytes from the
    wire and the OPT record from `req.edns`. Byte for byte what `packed_wire` gives, minus the
    ID; None for any other query.
    """
    msg = req.msg
    if len(msg.questions) != 1 or msg.rr or msg.auth:
        return None
    if any(rr.rtype != rc.OPT for rr in msg.ar):
        return None
    try:
        end = skip_name(req.wire, HEADER.size) + 4
    except WireError:
        return None
    if end > len(req.wire):
        return None
    edns = req.edns
    header = HEADER.pack(0, msg.header.bitmap, 1, 0, 0, 0 if edns is None else 1)
    opt = b"" if edns is None else opt_wire(edns)
    return header + req.wire[HEADER.size : end] + opt


def packed_wire(req: Request) -> bytes:
    """The upstream query packed from `req.msg`, its OPT record rebuilt from `req.edns`.

    Packed rather than copied from `req.wire`: plugins in front (rewrite, cache) may have
    changed the message.

    Raises:
        InvalidRequest: the message does not pack.
    """
    msg = req.msg
    ar = [rr for rr in msg.ar if rr.rtype != rc.OPT]
    if req.edns is not None:
        ar.append(opt_record(req.edns))
    out = DNSRecord(
        copy_header(msg.header),
        questions=list(msg.questions),
        rr=list(msg.rr),
        auth=list(msg.auth),
        ar=ar,
    )
    try:
        return bytes(out.pack())
    except (DNSError, DNSLabelError, DNSBufferError, ValueError) as exc:
        raise InvalidRequest(f"proxy: invalid request: {exc}") from exc


def opt_wire(edns: Edns) -> bytes:
    """The wire form of `opt_record(edns)`: root owner, type OPT, options in order."""
    options = b"".join(
        code.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data for code, data in edns.options
    )
    ttl = (edns.version << 16) | (0x8000 if edns.do else 0)
    return _OPT_FIXED.pack(0, rc.OPT, edns.udp_size, ttl, len(options)) + options


_OPT_FIXED: Final = struct.Struct("!BHHIH")


class RandomPool:
    """Random 16-bit numbers from the operating system's CSPRNG, read a page at a time.

    Each query needs a random ID and a random source port; one `getrandom` call per 2,048 of
    them instead of two per query.
    """

    __slots__ = ("_data", "_next")

    def __init__(self) -> None:
        self._data = memoryview(b"").cast("H")
        self._next = 0

    def u16(self) -> int:
        """A uniform number in [0, 65536)."""
        if self._next >= len(self._data):
            self._data = memoryview(os.urandom(RANDOM_PAGE)).cast("H")
            self._next = 0
        value: int = self._data[self._next]
        self._next += 1
        return value

    def below(self, n: int) -> int:
        """A uniform number in [0, n), 1 <= n <= 65536 (rejection sampling, no modulo bias)."""
        limit = 65536 - 65536 % n
        while True:
            value = self.u16()
            if value < limit:
                return value % n

    def reset(self) -> None:
        """Forget the unread numbers (a forked child must not reuse its parent's)."""
        self._data = memoryview(b"").cast("H")
        self._next = 0


RANDOM_PAGE: Final = 4096
_random = RandomPool()
os.register_at_fork(after_in_child=_random.reset)


def new_id() -> int:
    """A query ID from the operating system's CSPRNG."""
    return _random.u16()


def check_reply(data: bytes, qid: int, question: Question) -> DNSRecord | str:
    """Return the parsed reply, or why it must be discarded (RFC 5452 §3)."""
    if len(data) < 12:
        return "malformed"
    rid, flags, qdcount, *_ = HEADER.unpack_from(data)
    if rid != qid:
        return "id"
    if not flags & QR:
        return "not_response"
    if qdcount != 1:
        return "question"
    try:
        walk(data)
        msg = parse_message(data)
    except (WireError, DNSError):
        return "malformed"
    q = msg.questions[0]
    if (
        name_text(q.qname.label).lower() != question.name  # the text of `Request.name`
        or int(q.qtype) != question.qtype
        or int(q.qclass) != question.qclass
    ):
        return "question"
    return msg


def hostport(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """`host:port`, IPv6 in brackets (Go's JoinHostPort)."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _strerror(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


# -- UDP -----------------------------------------------------------------------------------------

_port_range: tuple[int, int] | None = None


def port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (read once), where random source ports are drawn."""
    global _port_range
    if _port_range is None:
        try:
            with open(PORT_RANGE_FILE, encoding="ascii") as fh:
                low, high = (int(v) for v in fh.read().split())
            _port_range = (low, high) if 1024 <= low <= high <= 65535 else DEFAULT_PORT_RANGE
        except (OSError, ValueError):
            _port_range = DEFAULT_PORT_RANGE
    return _port_range


def udp_socket(addr: UpstreamAddr, source: str) -> socket.socket:
    """A non-blocking UDP socket on a random source port, connected to the upstream.

    Raises:
        OSError: no socket could be created, bound or connected.
    """
    sock = socket.socket(addr.family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        local = source or ("::" if addr.family == socket.AF_INET6 else "0.0.0.0")
        low, high = port_range()
        for _ in range(BIND_TRIES):
            try:
                sock.bind((local, low + _random.below(high - low + 1)))
                break
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        else:
            sock.bind((local, 0))
        sock.connect((addr.host, addr.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def udp_exchange(
    addr: UpstreamAddr,
    wire: bytes,
    qid: int,
    question: Question,
    *,
    source: str,
    timeout_s: float,
    discard: Discard,
) -> DNSRecord:
    """Send one query over a fresh connected UDP socket and wait for the matching reply.

    The socket is watched with `add_reader` rather than wrapped in a datagram transport: a
    transport costs more than the rest of the exchange together, and a socket that lives for one
    query needs none of its buffering. Being connected, the socket only ever receives datagrams
    from the upstream's address and port; an ICMP error for it surfaces as an error of `recv`.

    Raises:
        ExchangeError: no socket, an ICMP error, or no acceptable reply within `timeout_s`.
    """
    try:
        sock = udp_socket(addr, source)
    except OSError as exc:
        raise ExchangeError(f"dial udp {addr.addr}: {_strerror(exc)}") from None
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[DNSRecord] = loop.create_future()
    fd = sock.fileno()

    def label() -> str:
        try:
            return f"udp {hostport(sock.getsockname())}->{addr.addr}"
        except OSError:
            return f"udp {addr.addr}"

    def readable() -> None:
        while not reply.done():
            try:
                data = sock.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                reply.set_exception(ExchangeError(f"read {label()}: read: {_strerror(exc)}"))
                return
            result = check_reply(data, qid, question)
            if isinstance(result, str):
                discard(result)
            else:
                reply.set_result(result)

    def expired() -> None:
        if not reply.done():
            reply.set_exception(ExchangeError(f"read {label()}: i/o timeout"))

    timer: asyncio.TimerHandle | None = None
    try:
        loop.add_reader(fd, readable)
        try:
            sock.send(wire)
        except OSError as exc:
            raise ExchangeError(f"write {label()}: write: {_strerror(exc)}") from None
        timer = loop.call_later(timeout_s, expired)
        return await reply
    finally:
        if timer is not None:
            timer.cancel()
        loop.remove_reader(fd)
        sock.close()
        if not reply.done():
            reply.cancel()


# -- TCP and TLS ---------------------------------------------------------------------------------


class StreamConn:
    """One TCP or TLS connection to an upstream."""

    __slots__ = ("created_s", "label", "proto", "reader", "used_s", "writer")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        proto: str,
        label: str,
        now_s: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.proto = proto
        self.label = label
        self.created_s = now_s
        self.used_s = now_s

    @property
    def closed(self) -> bool:
        """Whether the connection is known to be unusable."""
        return self.writer.is_closing() or self.reader.at_eof()

    def close(self) -> None:
        """Close without waiting."""
        self.writer.close()


async def open_stream(
    addr: UpstreamAddr,
    proto: str,
    *,
    source: str,
    ssl_context: ssl.SSLContext | None,
    server_name: str,
    timeout_s: float,
) -> StreamConn:
    """Connect to the upstream over TCP (`proto` "tcp") or TLS ("tcp-tls").

    Raises:
        ExchangeError: the connection or the TLS handshake failed or timed out.
    """
    loop = asyncio.get_running_loop()
    tls = proto == "tcp-tls"
    try:
        async with asyncio.timeout(timeout_s):
            if tls:
                reader, writer = await asyncio.open_connection(
                    addr.host,
                    addr.port,
                    ssl=ssl_context,
                    server_hostname=server_name or addr.host,
                    local_addr=(source, 0) if source else None,
                    limit=MAX_MESSAGE + 2,
                )
            else:
                reader, writer = await asyncio.open_connection(
                    addr.host,
                    addr.port,
                    local_addr=(source, 0) if source else None,
                    limit=MAX_MESSAGE + 2,
                )
    except TimeoutError:
        raise ExchangeError(f"dial tcp {addr.addr}: i/o timeout") from None
    except ssl.SSLError as exc:
        raise ExchangeError(f"tls: {exc.reason or exc}") from None
    except OSError as exc:
        raise ExchangeError(f"dial tcp {addr.addr}: connect: {_strerror(exc)}") from None
    local = writer.get_extra_info("sockname")
    label = f"tcp {hostport(local)}->{addr.addr}" if local else f"tcp {addr.addr}"
    return StreamConn(reader, writer, proto, label, loop.time())


async def stream_exchange(
    conn: StreamConn,
    wire: bytes,
    qid: int,
    question: Question,
    *,
    timeout_s: float,
    discard: Discard,
    cached: bool,
) -> DNSRecord:
    """Send one length-prefixed query on `conn` and read until the matching reply.

    Raises:
        CachedConnClosed: `cached` and the peer had closed the connection before answering.
        ExchangeError: the write or read failed, or no acceptable reply within `timeout_s`.
    """
    answered = False
    try:
        async with asyncio.timeout(timeout_s):
            conn.writer.write(len(wire).to_bytes(2, "big") + wire)
            await conn.writer.drain()
            while True:
                size = int.from_bytes(await conn.reader.readexactly(2), "big")
                answered = True
                data = await conn.reader.readexactly(size)
                result = check_reply(data, qid, question)
                if isinstance(result, str):
                    discard(result)
                    continue
                return result
    except TimeoutError:
        raise ExchangeError(f"read {conn.label}: i/o timeout") from None
    except asyncio.IncompleteReadError:
        if cached and not answered:
            raise CachedConnClosed(f"read {conn.label}: EOF") from None
        raise ExchangeError(f"read {conn.label}: EOF") from None
    except OSError as exc:
        if cached and not answered:
            raise CachedConnClosed(f"write {conn.label}: {_strerror(exc)}") from None
        raise ExchangeError(f"read {conn.label}: {_strerror(exc)}") from None


class ConnPool:
    """Idle connections of one upstream, per protocol, oldest first. Loop-thread only."""

    def __init__(self, *, expire_s: float, max_age_s: float, max_idle: int) -> None:
        self.expire_s = expire_s
        self.max_age_s = max_age_s
        self.max_idle = max_idle or DEFAULT_IDLE_CAP
        self._idle: dict[str, deque[StreamConn]] = {}

    def _stale(self, conn: StreamConn, now_s: float) -> bool:
        if conn.closed or now_s - conn.used_s > self.expire_s:
            return True
        return self.max_age_s > 0 and now_s - conn.created_s > self.max_age_s

    def take(self, proto: str, now_s: float) -> StreamConn | None:
        """The oldest usable idle connection for `proto` (stale ones are closed), or None."""
        idle = self._idle.get(proto)
        while idle:
            conn = idle.popleft()
            if self._stale(conn, now_s):
                conn.close()
                continue
            return conn
        return None

    def give(self, conn: StreamConn, now_s: float) -> None:
        """Return a connection after a successful exchange (closed when the pool is full)."""
        idle = self._idle.setdefault(conn.proto, deque())
        if conn.closed or len(idle) >= self.max_idle:
            conn.close()
            return
        conn.used_s = now_s
        idle.append(conn)

    def sweep(self, now_s: float) -> None:
        """Close every idle connection that has expired."""
        for idle in self._idle.values():
            keep = [c for c in idle if not self._stale(c, now_s)]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            idle.clear()
            idle.extend(keep)

    def close_all(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
            idle.clear()

    def idle_count(self, proto: str) -> int:
        """Idle connections held for `proto`."""
        return len(self._idle.get(proto, ()))


def tls_context(files: TLSFiles | None) -> ssl.SSLContext:
    """The client TLS context: TLS 1.2 minimum, the system CAs or the given CA, optional cert.

    Raises:
        ssl.SSLError, OSError: a file does not load.
    """
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=(files.ca or None) if files else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if files is not None and files.cert:
        ctx.load_cert_chain(files.cert, files.key or None)
    return ctx
