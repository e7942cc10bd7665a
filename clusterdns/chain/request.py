"""Request: one decoded query plus where it came from, with derived fields computed once.

dnslib values are converted to plain str/int here so plugin code never handles dnslib internals
for the question or EDNS. `edns` may be replaced by a plugin (bufsize) before later plugins run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final

from dnslib import RR, DNSHeader, DNSLabel, DNSRecord

from clusterdns.dnsutil import rcode as rc

MIN_UDP: Final = 512
MAX_TCP: Final = 65535


@dataclass(frozen=True, slots=True)
class Edns:
    """The query's OPT record, reduced to what the server uses."""

    version: int
    udp_size: int
    do: bool
    options: tuple[tuple[int, bytes], ...] = ()

    def with_size(self, size: int) -> Edns:
        """A copy advertising `size` bytes."""
        return Edns(self.version, size, self.do, self.options)


def edns_of(msg: DNSRecord) -> Edns | None:
    """Extract the OPT record of a parsed message, if any."""
    for rr in msg.ar:
        if rr.rtype == 41:
            ttl = int(rr.ttl)
            opts: list[tuple[int, bytes]] = []
            for opt in rr.rdata or ():
                opts.append((int(opt.code), bytes(opt.data)))
            return Edns(
                version=(ttl >> 16) & 0xFF,
                udp_size=int(rr.rclass),
                do=bool(ttl & 0x8000),
                options=tuple(opts),
            )
    return None


class Request:
    """A query in flight. Not thread-safe; lives on the event loop."""

    def __init__(
        self,
        msg: DNSRecord,
        wire: bytes,
        *,
        proto: str,
        remote: tuple[str, int],
        local: tuple[str, int],
        server: str = "",
    ) -> None:
        self.msg = msg
        self.wire = wire
        self.proto = proto
        self.remote = remote
        self.local = local
        self.server = server
        self.zone = "."
        self.edns: Edns | None = edns_of(msg)

    @cached_property
    def qname(self) -> str:
        """The question name exactly as the client wrote it, absolute."""
        return str(self.msg.q.qname) if self.msg.questions else "."

    @property
    def owner(self) -> DNSLabel:
        """The question name as wire labels, for the owners of answers.

        Byte for byte what the client sent: text would re-encode a label holding a dot or
        non-ASCII bytes.
        """
        return self.msg.q.qname if self.msg.questions else DNSLabel(())

    @cached_property
    def name(self) -> str:
        """The question name lower-cased (ASCII), absolute."""
        return self.qname.lower()

    @cached_property
    def qtype(self) -> int:
        """The question type number."""
        return int(self.msg.q.qtype) if self.msg.questions else 0

    @cached_property
    def qclass(self) -> int:
        """The question class number."""
        return int(self.msg.q.qclass) if self.msg.questions else 0

    @property
    def type_name(self) -> str:
        """The question type mnemonic (`TYPE<n>` when unknown)."""
        return rc.type_name(self.qtype)

    @property
    def class_name(self) -> str:
        """The question class mnemonic."""
        return rc.class_name(self.qclass)

    @property
    def id(self) -> int:
        """The query ID."""
        return int(self.msg.header.id)

    @property
    def do(self) -> bool:
        """Whether the DO bit was set."""
        return self.edns is not None and self.edns.do

    @property
    def max_size(self) -> int:
        """The largest reply the client accepts: 65535 over TCP, else its EDNS size (min 512)."""
        if self.proto == "tcp":
            return MAX_TCP
        if self.edns is None:
            return MIN_UDP
        return max(MIN_UDP, self.edns.udp_size)

    @property
    def family(self) -> int:
        """1 for an IPv4 client, 2 for IPv6 (the metrics `family` label)."""
        return 2 if ":" in self.remote[0] else 1

    @property
    def size(self) -> int:
        """The size of the query as received."""
        return len(self.wire)

    def reply(self, *, aa: bool = True, rcode: int = 0) -> DNSRecord:
        """A new reply: same ID, opcode, RD and CD as the query, QR set, the question copied.

        Unlike dnslib's `reply()`, AD is not copied and RA is not set (spec §4.6).
        """
        h = self.msg.header
        # QR, the query's opcode, RD and CD; AA as asked; the rcode's low 4 bits.
        bitmap = 0x8000 | (h.bitmap & 0x7910) | (0x0400 if aa else 0) | (rcode & 0xF)
        header = DNSHeader(id=h.id, bitmap=bitmap)
        return DNSRecord(header, q=self.msg.q if self.msg.questions else None)


def answer_rr(owner: str, rtype: int, rdata: object, ttl: int) -> RR:
    """Build a class-IN resource record (a thin typed wrapper over dnslib's RR)."""
    return RR(owner, rtype, rdata=rdata, ttl=ttl)
