"""The responder: raw query bytes in, reply bytes out, for one listener.

Order of work for a datagram (spec §4.3, STYLE §1.2): the fast path first (a dict lookup on the
bytes after the ID; a hit splices the ID and sends, no decoding, no task); then the header policy
(drop / NOTIMP / FORMERR decided from 12 bytes); then, under a cap on work in flight, a task that
walks the message with hard bounds, decodes it with dnslib, applies the class and EDNS-version
checks, routes it to a block and runs that block's chain. Nothing a client sends escapes as an
exception; everything that is dropped or rejected is counted.

UDP queries are read into `UDP_QUERY_BUFFER` bytes and an advertised EDNS size above
`MAX_UDP_REPLY` is lowered to it before the slow path (`udp_query`), so no UDP reply is larger
whatever a spoofed query asks for.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Final

from dnslib import RR, DNSHeader, DNSRecord

from clusterdns.chain.fastpath import VARIANTS, FastPath, Prepared, Variants
from clusterdns.chain.request import Request
from clusterdns.chain.writer import Writer
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.wire import (
    HEADER,
    Verdict,
    WireError,
    header_only_reply,
    header_verdict,
    no_pointer,
    skip_name,
    walk,
)
from clusterdns.errors import PluginError
from clusterdns.metrics import Metrics
from clusterdns.server.mux import Mux

log = logging.getLogger("clusterdns.server")

DEFAULT_MAX_INFLIGHT = 10_000
UDP_QUERY_BUFFER = 512
"""CoreDNS reads UDP queries into 512 bytes (spec §4.1, quirk Q27): longer ones are cut."""
MAX_UDP_REPLY: Final = 4096
"""The largest UDP reply, in bytes: the top of the `bufsize` range and RFC 6891's suggested
maximum. With the 28-byte smallest EDNS query this bounds the reply/query ratio at 146."""
_RR_FIXED: Final = struct.Struct("!HHIH")
_OPT: Final = 41

Send = Callable[[bytes], None]


class Responder:
    """Answers queries for one listener; `mux` may be swapped (reload) at any time."""

    def __init__(
        self,
        *,
        mux: Mux,
        fastpath: FastPath,
        metrics: Metrics,
        server: str,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self.mux = mux
        self.fastpath = fastpath
        self.metrics = metrics
        self.server = server
        self.max_inflight = max_inflight
        self.tasks: set[asyncio.Task[None]] = set()

    # -- UDP hot path ----------------------------------------------------------------------------
    def datagram(
        self, data: bytes, remote: tuple[str, int], local: tuple[str, int], send: Send
    ) -> None:
        """Handle one UDP datagram as the UDP listener does; never raises.

        The UDP protocol inlines the fast-path half of this (udp.py); this form is for callers
        that hold a plain `send`. A miss goes on as `udp_query` makes it (cut, size capped).
        """
        if len(data) > UDP_QUERY_BUFFER:
            data = data[:UDP_QUERY_BUFFER]
        entry = self.fastpath.get(data[2:])
        if entry is not None:
            send(data[:2] + entry.next_tail())
            self.replayed(entry, "udp", 2 if ":" in remote[0] else 1)
            return
        self.submit(udp_query(data), "udp", remote, local, send)

    def replayed(self, entry: Prepared, proto: str, family: int) -> None:
        """Count one fast-path replay (the server's counter, then the plugins' hooks)."""
        self.metrics.fastpath_hits.inc()
        if entry.on_hit is not None:
            entry.on_hit(proto, family)

    def submit(
        self, data: bytes, proto: str, remote: tuple[str, int], local: tuple[str, int], send: Send
    ) -> asyncio.Task[None] | None:
        """Answer from the fast path or the header alone, or start the slow path.

        Returns the slow path's task; None means nothing is pending: the packet was answered
        or dropped (and counted) at once, including when the cap on queries in flight was hit.
        UDP callers have already looked the query up in the fast path; TCP queries are looked
        up here.
        """
        if proto == "tcp":
            entry = self.fastpath.get_tcp(data[2:])
            if entry is not None:
                send(data[:2] + entry.next_tail())
                self.replayed(entry, proto, 2 if ":" in remote[0] else 1)
                return None
        verdict = header_verdict(data)
        if verdict is Verdict.DROP:
            self.metrics.dropped.inc(("short" if len(data) < 12 else "response",))
            return None
        if verdict is Verdict.NOTIMP:
            self.metrics.rejected.inc(("NOTIMP",))
            send(header_only_reply(data, rc.NOTIMP, keep_opcode=True))
            return None
        if verdict is Verdict.FORMERR:
            self.metrics.rejected.inc(("FORMERR",))
            send(header_only_reply(data, rc.FORMERR, keep_opcode=False))
            return None
        if len(self.tasks) >= self.max_inflight:
            self.metrics.dropped.inc(("overload",))
            return None
        task = asyncio.get_running_loop().create_task(self.handle(data, proto, remote, local, send))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- slow path -------------------------------------------------------------------------------
    async def handle(
        self, data: bytes, proto: str, remote: tuple[str, int], local: tuple[str, int], send: Send
    ) -> None:
        """Decode, check, route and serve one query whose header was accepted."""
        if len(data) == 12:
            # QDCOUNT 1 but the packet ends after the header: an empty question (spec §4.3).
            self._count_dropped(proto, remote, 0, rc.SERVFAIL)
            send(header_only_reply(data, rc.SERVFAIL, keep_opcode=True))
            return
        try:
            walk(data)
            msg = parse_message(data)
        except (
            Exception
        ):  # the walk bounds the input; this guards the foreign decoder on peer input
            self.metrics.rejected.inc(("FORMERR",))
            send(
                header_only_reply(
                    data, rc.FORMERR, keep_opcode=False, question=_echoable_question(data)
                )
            )
            return
        req = Request(msg, data, proto=proto, remote=remote, local=local, server=self.server)
        if req.qclass != rc.IN:
            self._count_dropped(proto, remote, req.qtype, rc.REFUSED)
            Writer(req, send).write(req.reply(aa=False, rcode=rc.REFUSED), "")
            return
        if req.edns is not None and req.edns.version > 0:
            self.metrics.rejected.inc(("BADVERS",))
            send(_badvers(req))
            return
        routed = self.mux.route(req.name)
        if routed is None or routed[1].head is None:
            self._count_dropped(proto, remote, req.qtype, rc.REFUSED)
            Writer(req, send).write(req.reply(aa=False, rcode=rc.REFUSED), "")
            return
        req.zone, block = routed
        assert block.head is not None
        w = Writer(req, send)
        try:
            code = await block.head.serve(req, w)
        except PluginError as exc:
            code = exc.rcode
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                'Recovered from panic in server: "%s" %s: %s', self.server, type(exc).__name__, exc
            )
            self.metrics.panics.inc()
            self._count_dropped(proto, remote, req.qtype, rc.SERVFAIL)
            code = rc.SERVFAIL
        if not w.written:
            if code in rc.CLIENT_WRITE_ERRORS:
                w.write(req.reply(aa=False, rcode=code), "")
            return
        offer = w.offer
        if offer is not None and block.fastpath and not w.truncated and plain_question(data):
            variants: list[bytes] = []
            if offer.variants is not None:
                try:
                    packed = _packed_variants(req, offer.variants, w.plugin, len(w.wire))
                except Exception as exc:  # a plugin's callback: never let it reach the loop
                    log.error("fast path: building reply orders failed: %s", exc)
                    return
                if packed is None:
                    return
                variants = packed
            self.fastpath.offer(data[2:], w.wire, offer, proto=proto, variants=variants)

    def _count_dropped(self, proto: str, remote: tuple[str, int], qtype: int, code: int) -> None:
        family = "2" if ":" in remote[0] else "1"
        m = self.metrics
        m.requests.inc((self.server, "dropped", "", proto, family, rc.metric_type(qtype)))
        m.responses.inc((self.server, "dropped", "", rc.rcode_name(code), ""))

    async def drain(self, timeout_s: float) -> None:
        """Wait for queries in flight, up to `timeout_s`; cancel what is left."""
        pending = set(self.tasks)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)


def udp_query(data: bytes) -> bytes:
    """Return a UDP query as the slow path gets it (cut, its advertised EDNS size capped).

    Cut to `UDP_QUERY_BUFFER` bytes; an advertised size above `MAX_UDP_REPLY` is lowered to it,
    as the `bufsize` plugin would.
    """
    data = data[:UDP_QUERY_BUFFER]
    if len(data) > 11 and (data[10] or data[11]):
        data = cap_advertised_size(data, MAX_UDP_REPLY)
    return data


def cap_advertised_size(data: bytes, cap: int) -> bytes:
    """Lower the UDP size a query's OPT record advertises to `cap` if it is larger.

    Only the two bytes of the size change; a packet that does not walk cleanly, or whose section
    counts the header policy rejects anyway, is returned as it is (the responder answers it).
    """
    an = (data[6] << 8) | data[7]
    ns = (data[8] << 8) | data[9]
    ar = (data[10] << 8) | data[11]
    if (data[4] << 8) | data[5] != 1 or an > 1 or ns > 1 or ar > 2:
        return data
    try:
        off = skip_name(data, 12) + 4
        for index in range(an + ns + ar):
            off = skip_name(data, off)
            if off + 10 > len(data):
                return data
            rtype, size, _, rdlen = _RR_FIXED.unpack_from(data, off)
            if rtype == _OPT and index >= an + ns:
                if size <= cap:
                    return data
                return data[: off + 2] + cap.to_bytes(2, "big") + data[off + 4 :]
            off += 10 + rdlen
    except WireError:
        return data
    return data


def plain_question(data: bytes) -> bool:
    """Whether the question name of a walked query is written out, without compression.

    The fast path keys on the bytes after the ID, so a question name that points into the header
    (the ID among it) could name something the key does not hold: such a query is answered by
    the full chain every time. No client compresses the question (nothing comes before it).
    """
    return no_pointer(data, HEADER.size)


def _packed_variants(
    req: Request, variants: Variants, plugin: str, size: int
) -> list[bytes] | None:
    """The other orders of an offered reply, packed as the writer packed the reply itself.

    None when one of them does not come out as the same untruncated size (then nothing is
    stored: a replay must be a reply the full chain could have sent).
    """
    out: list[bytes] = []
    for msg in variants(VARIANTS - 1):
        sink: list[bytes] = []
        w = Writer(req, sink.append)
        w.write(msg, plugin)
        if w.truncated or len(w.wire) != size:
            return None
        out.append(w.wire)
    return out


def _echoable_question(data: bytes) -> bytes:
    """The raw question of a rejected packet, when it parsed without compression; else b""."""
    try:
        end = skip_name(data, 12)
    except WireError:
        return b""
    if end + 4 > len(data):
        return b""
    off = 12
    while data[off]:
        if data[off] & 0xC0:
            return b""
        off += 1 + data[off]
    return data[12 : end + 4]


def _badvers(req: Request) -> bytes:
    """The BADVERS reply: question and RD/CD copied, a bare OPT carrying the extended rcode."""
    h = req.msg.header
    header = DNSHeader(id=h.id, qr=1, opcode=h.opcode, rd=h.rd, cd=h.cd, rcode=rc.BADVERS & 0xF)
    reply = DNSRecord(header, q=req.msg.q)
    reply.add_ar(RR(".", 41, rclass=0, ttl=(rc.BADVERS >> 4) << 24, rdata=[]))
    return bytes(reply.pack())
