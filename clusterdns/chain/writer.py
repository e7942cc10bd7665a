"""ResponseWriter: the one place every reply passes through (spec §4.4).

The server's writer mirrors the query's EDNS, fits the reply to the client's buffer (TC when
records had to go), packs and sends. It records what was written so that the server, `log`,
`errors` and `prometheus` know the outcome without re-deciding it from return codes. Wrapping
writers (cache, loadbalance, rewrite) subclass WriterWrapper and forward to the writer they wrap.

A reply is packed before anything is recorded: a message dnslib cannot encode (a record it
decoded from an upstream but cannot write again, such as an NSEC with an empty type bitmap)
raises `PluginError` (SERVFAIL) from `write`, and the writer stays unwritten, so the client
gets the SERVFAIL reply instead of silence.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, Protocol

from dnslib import RR, DNSError, DNSHeader, DNSRecord, EDNSOption
from dnslib.buffer import BufferError
from dnslib.label import DNSLabelError

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.request import Request
from clusterdns.errors import PluginError

# EDNS options always echoed unchanged (spec §4.4): NSID, EXPIRE, COOKIE, TCP-KEEPALIVE, PADDING.
ECHOED_OPTIONS: Final = frozenset({3, 9, 10, 11, 12})
OPT: Final = 41
PACK_ERRORS: Final = (
    DNSError,
    DNSLabelError,
    BufferError,
    struct.error,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
)
"""What dnslib's encoder raises on a message it cannot write (IndexError for an NSEC with an
empty type bitmap, DNSLabelError for a name over 255 octets, struct.error for a field out of
range)."""


class ResponseWriter(Protocol):
    """Where a plugin writes its reply; also records what was written."""

    @property
    def proto(self) -> str: ...
    @property
    def remote(self) -> tuple[str, int]: ...
    @property
    def local(self) -> tuple[str, int]: ...
    @property
    def written(self) -> bool: ...
    @property
    def rcode(self) -> int: ...
    @property
    def msg(self) -> DNSRecord | None: ...
    @property
    def plugin(self) -> str: ...
    @property
    def rsize(self) -> int: ...

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Send `msg` as the reply; `plugin` names who built it (metrics `plugin` label).

        Raises:
            PluginError: the reply does not pack (SERVFAIL); nothing was written.
        """

    def offer_fastpath(self, offer: Offer) -> None:
        """Allow the fast path to replay the reply about to be written, while `offer` holds."""


def full_rcode(msg: DNSRecord) -> int:
    """The reply's rcode including the extended bits carried in an OPT record."""
    code = int(msg.header.rcode)
    for rr in msg.ar:
        if rr.rtype == OPT:
            code |= ((int(rr.ttl) >> 24) & 0xFF) << 4
    return code


def copy_header(h: DNSHeader) -> DNSHeader:
    """A detached copy of a dnslib header."""
    return DNSHeader(id=h.id, bitmap=h.bitmap, q=h.q, a=h.a, auth=h.auth, ar=h.ar)


def mirror_edns(msg: DNSRecord, req: Request) -> tuple[DNSRecord, int]:
    """Return the reply with the query's EDNS mirrored, and the bytes that adds (spec §4.4 step 1).

    The reply object the plugin built is not changed.
    """
    qe = req.edns
    if qe is None:
        return msg, 0
    existing = next((rr for rr in msg.ar if rr.rtype == OPT), None)
    keep_do = False
    if existing is not None:
        options = list(existing.rdata or ())
        ext = (int(existing.ttl) >> 24) & 0xFF
        keep_do = bool(int(existing.ttl) & 0x8000)  # as CoreDNS's SizeAndDo: DO is never cleared
    else:
        options = [EDNSOption(code, data) for code, data in qe.options if code in ECHOED_OPTIONS]
        ext = 0
    ttl = (ext << 24) | (0x8000 if qe.do or keep_do else 0)
    opt = RR(".", OPT, rclass=qe.udp_size, ttl=ttl, rdata=options)
    out = DNSRecord(
        copy_header(msg.header),
        questions=list(msg.questions),
        rr=list(msg.rr),
        auth=list(msg.auth),
        ar=[rr for rr in msg.ar if rr.rtype != OPT] + [opt],
    )
    added = 0 if existing is not None else 11 + sum(4 + len(o.data) for o in options)
    return out, added


def pack_fitted(msg: DNSRecord, limit: int) -> tuple[bytes, bool]:
    """Pack `msg` into at most `limit` bytes, keeping records in section order while they fit.

    Returns the wire bytes and whether records were dropped (then TC is set). The OPT record is
    always kept. An upstream TC bit already on the message is preserved.
    """
    wire = bytes(msg.pack())
    if len(wire) <= limit:
        return wire, False
    opt = [rr for rr in msg.ar if rr.rtype == OPT]
    records = [(0, rr) for rr in msg.rr] + [(1, rr) for rr in msg.auth]
    records += [(2, rr) for rr in msg.ar if rr.rtype != OPT]

    def build(k: int) -> DNSRecord:
        kept = records[:k]
        header = copy_header(msg.header)
        header.tc = 1
        return DNSRecord(
            header,
            questions=list(msg.questions),
            rr=[rr for s, rr in kept if s == 0],
            auth=[rr for s, rr in kept if s == 1],
            ar=[rr for s, rr in kept if s == 2] + opt,
        )

    lo, hi = 0, len(records) - 1
    best = bytes(build(0).pack())
    while lo <= hi:
        mid = (lo + hi + 1) // 2
        candidate = bytes(build(mid).pack())
        if len(candidate) <= limit:
            best = candidate
            lo = mid + 1
            if mid == hi:
                break
        else:
            hi = mid - 1
    return best, True


class Writer:
    """The server-side writer for one query: mirror EDNS, fit, pack, send (once)."""

    def __init__(self, req: Request, send: Callable[[bytes], None]) -> None:
        self.req = req
        self._send = send
        self._msg: DNSRecord | None = None
        self._plugin = ""
        self._rcode = 0
        self._rsize = 0
        self.truncated = False
        self.wire = b""
        self.offer: Offer | None = None
        """Set by the answering plugin when the fast path may replay this exact reply."""

    @property
    def proto(self) -> str:
        return self.req.proto

    @property
    def remote(self) -> tuple[str, int]:
        return self.req.remote

    @property
    def local(self) -> tuple[str, int]:
        return self.req.local

    @property
    def written(self) -> bool:
        return self._msg is not None

    @property
    def rcode(self) -> int:
        return self._rcode

    @property
    def msg(self) -> DNSRecord | None:
        return self._msg

    @property
    def plugin(self) -> str:
        return self._plugin

    @property
    def rsize(self) -> int:
        return self._rsize

    def offer_fastpath(self, offer: Offer) -> None:
        """Record that the fast path may replay this reply (the responder decides)."""
        self.offer = offer

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Finish and send the reply; a second write for the same query is ignored.

        Raises:
            PluginError: the reply does not pack (SERVFAIL); the writer stays unwritten, so the
                server (or a plugin) can still write the error reply.
        """
        if self._msg is not None:
            return
        out, added = mirror_edns(msg, self.req)
        try:
            wire, truncated = pack_fitted(out, self.req.max_size)
            rsize = len(msg.pack()) if truncated else len(wire) - added
        except PACK_ERRORS as exc:
            raise PluginError(plugin or "server", f"reply does not pack: {exc!r}") from exc
        self._msg = msg
        self._plugin = plugin
        self._rcode = full_rcode(msg)
        self.truncated = truncated
        self._rsize = rsize
        self.wire = wire
        self._send(wire)


class WriterWrapper:
    """Base for writers that wrap another one; everything is forwarded unless overridden."""

    def __init__(self, inner: ResponseWriter) -> None:
        self.inner = inner

    @property
    def proto(self) -> str:
        return self.inner.proto

    @property
    def remote(self) -> tuple[str, int]:
        return self.inner.remote

    @property
    def local(self) -> tuple[str, int]:
        return self.inner.local

    @property
    def written(self) -> bool:
        return self.inner.written

    @property
    def rcode(self) -> int:
        return self.inner.rcode

    @property
    def msg(self) -> DNSRecord | None:
        return self.inner.msg

    @property
    def plugin(self) -> str:
        return self.inner.plugin

    @property
    def rsize(self) -> int:
        return self.inner.rsize

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Forward the reply to the wrapped writer."""
        self.inner.write(msg, plugin)

    def offer_fastpath(self, offer: Offer) -> None:
        """Forward the offer; wrappers that change replies per query override this to drop it."""
        self.inner.offer_fastpath(offer)


class CaptureWriter:
    """Records a reply without sending it.

    For sub-queries a plugin runs through a chain itself (ExternalName targets, autopath tries).
    """

    def __init__(self, proto: str, remote: tuple[str, int], local: tuple[str, int]) -> None:
        self._proto = proto
        self._remote = remote
        self._local = local
        self._msg: DNSRecord | None = None
        self._plugin = ""

    @property
    def proto(self) -> str:
        return self._proto

    @property
    def remote(self) -> tuple[str, int]:
        return self._remote

    @property
    def local(self) -> tuple[str, int]:
        return self._local

    @property
    def written(self) -> bool:
        return self._msg is not None

    @property
    def rcode(self) -> int:
        return full_rcode(self._msg) if self._msg is not None else 0

    @property
    def msg(self) -> DNSRecord | None:
        return self._msg

    @property
    def plugin(self) -> str:
        return self._plugin

    @property
    def rsize(self) -> int:
        return len(self._msg.pack()) if self._msg is not None else 0

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Keep the first reply."""
        if self._msg is None:
            self._msg = msg
            self._plugin = plugin

    def offer_fastpath(self, offer: Offer) -> None:
        """A captured reply is never replayed by the fast path."""
