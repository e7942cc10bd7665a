"""Wire-level checks done before any full decode: header policy and a bounded message walk.

Decide from the header and section counts first (spec §4.3, reliability W1-W13), then walk every
name and record with hard bounds (label and name lengths, strictly backward compression pointers,
rdata inside the packet), so the full decoder only ever sees structurally valid input.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

HEADER: Final = struct.Struct("!HHHHHH")
QR: Final = 0x8000
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100
RA: Final = 0x0080
Z: Final = 0x0040
AD: Final = 0x0020
CD: Final = 0x0010
OPCODE_MASK: Final = 0x7800
RCODE_MASK: Final = 0x000F
OPCODE_QUERY: Final = 0
OPCODE_NOTIFY: Final = 4
MAX_NAME: Final = 255
MAX_POINTER_HOPS: Final = 127


class Verdict(enum.Enum):
    """What the header alone says about a packet."""

    ACCEPT = "accept"
    DROP = "drop"  # shorter than a header, or a response (QR=1)
    NOTIMP = "notimp"  # opcode other than QUERY/NOTIFY
    FORMERR = "formerr"  # section counts outside the accepted policy


def header_verdict(data: bytes) -> Verdict:
    """Apply the accept policy of the DNS library CoreDNS uses (miekg/dns) to the header."""
    if len(data) < 12:
        return Verdict.DROP
    _, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if flags & QR:
        return Verdict.DROP
    opcode = (flags & OPCODE_MASK) >> 11
    if opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
        return Verdict.NOTIMP
    if qd != 1 or an > 1 or ns > 1 or ar > 2:
        return Verdict.FORMERR
    return Verdict.ACCEPT


class WireError(ValueError):
    """The packet is not a well-formed DNS message; the text says where."""


def skip_name(data: bytes, off: int) -> int:
    """Return the offset after the name at `off`, validating it.

    Raises:
        WireError: out of bounds, extended label types, a pointer that is not strictly backward,
            too many pointer hops, or a decoded name longer than 255 octets.
    """
    n = len(data)
    end = -1
    total = 1
    hops = 0
    while True:
        if off >= n:
            raise WireError("name runs past the end of the packet")
        length = data[off]
        kind = length & 0xC0
        if kind == 0xC0:
            if off + 1 >= n:
                raise WireError("truncated compression pointer")
            ptr = ((length & 0x3F) << 8) | data[off + 1]
            if ptr >= off:
                raise WireError("compression pointer does not point backward")
            if end < 0:
                end = off + 2
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise WireError("too many compression pointers")
            off = ptr
            continue
        if kind:
            raise WireError("extended label type")
        if length == 0:
            return end if end >= 0 else off + 1
        total += length + 1
        if total > MAX_NAME:
            raise WireError("name longer than 255 octets")
        off += 1 + length


@dataclass(frozen=True, slots=True)
class Walk:
    """Result of a message walk: where the question ends, and how many OPT records were seen."""

    question_end: int
    question_raw: bool
    """True when the question name uses no compression pointer (so its bytes can be echoed)."""


def walk(data: bytes) -> Walk:
    """Validate every name and record of a message whose header was accepted.

    Raises:
        WireError: the first structural problem found.
    """
    _, _, qd, an, ns, ar = HEADER.unpack_from(data)
    off = 12
    n = len(data)
    q_end = -1
    raw = True
    for _ in range(qd):
        name_end = skip_name(data, off)
        raw = raw and no_pointer(data, off)
        off = name_end + 4
        if off > n:
            raise WireError("question runs past the end of the packet")
        q_end = off
    opt_seen = 0
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            start = off
            off = skip_name(data, off)
            if off + 10 > n:
                raise WireError("record header runs past the end of the packet")
            rtype, _, _, rdlen = struct.unpack_from("!HHIH", data, off)
            off += 10
            if off + rdlen > n:
                raise WireError("rdata runs past the end of the packet")
            if rtype == 41:
                if section != 3:
                    raise WireError("OPT record outside the additional section")
                opt_seen += 1
                if opt_seen > 1:
                    raise WireError("more than one OPT record")
                if data[start] != 0:
                    raise WireError("OPT record owner is not the root")
                _check_options(data, off, off + rdlen)
            off += rdlen
    return Walk(question_end=q_end, question_raw=raw)


def no_pointer(data: bytes, off: int) -> bool:
    """Whether the (already walked) name at `off` is written out in full, with no pointer."""
    while True:
        length = data[off]
        if length == 0:
            return True
        if length & 0xC0:
            return False
        off += 1 + length


def _check_options(data: bytes, off: int, end: int) -> None:
    while off < end:
        if off + 4 > end:
            raise WireError("truncated EDNS option header")
        code, length = struct.unpack_from("!HH", data, off)
        off += 4
        if off + length > end:
            raise WireError("EDNS option overruns the OPT record")
        if code == 10 and not (length == 8 or 16 <= length <= 40):
            raise WireError("malformed COOKIE option")
        off += length


def header_only_reply(
    data: bytes, rcode: int, *, keep_opcode: bool, question: bytes = b""
) -> bytes:
    """Build the reply the DNS library sends for a rejected packet (spec §4.3).

    Same ID and header bits as the query, QR set, AA and Z cleared, no sections except the
    question when it could be echoed; FORMERR also forces the opcode to QUERY.
    """
    qid, flags, *_ = HEADER.unpack_from(data)
    flags &= ~(AA | Z | RCODE_MASK)
    if not keep_opcode:
        flags &= ~OPCODE_MASK
    flags |= QR | (rcode & RCODE_MASK)
    return HEADER.pack(qid, flags, 1 if question else 0, 0, 0, 0) + question
