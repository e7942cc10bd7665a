"""Decode a DNS message with dnslib, accepting every legal label.

dnslib's own `DNSRecord.parse` rejects labels that are not UTF-8 (legal in DNS: RFC 2181 §11)
and follows compression pointers recursively. This decoder runs dnslib's section parsers over a
buffer whose name decoding is iterative and byte-transparent. Call it only on packets that
`dnsutil.wire.walk` accepted, so pointers are known to be strictly backward and names bounded.
"""

from __future__ import annotations

import struct

from dnslib import RR, DNSError, DNSHeader, DNSQuestion, DNSRecord, EDNSOption
from dnslib.buffer import BufferError
from dnslib.label import DNSBuffer, DNSLabel

from clusterdns.dnsutil.wire import MAX_NAME, MAX_POINTER_HOPS, skip_name


class _Buffer(DNSBuffer):  # type: ignore[misc]
    offset: int
    data: bytearray

    def decode_name(self, last: int = -1) -> DNSLabel:
        # Bounded whatever the input: names inside RDATA were not walked, so pointers must point
        # strictly backward, hops are capped and the name may not exceed 255 octets.
        labels: list[bytes] = []
        resume = -1
        off = self.offset
        data = self.data
        total = 1
        hops = 0
        while True:
            if off >= len(data):
                raise BufferError("name runs past the end of the message")
            length = data[off]
            if length & 0xC0 == 0xC0:
                if off + 1 >= len(data):
                    raise BufferError("truncated compression pointer")
                target = ((length & 0x3F) << 8) | data[off + 1]
                hops += 1
                if target >= off or hops > MAX_POINTER_HOPS:
                    raise BufferError("compression pointer loop")
                if resume < 0:
                    resume = off + 2
                off = target
                continue
            if length & 0xC0:
                raise BufferError("extended label type")
            if length == 0:
                off += 1
                break
            total += length + 1
            if total > MAX_NAME or off + 1 + length > len(data):
                raise BufferError("name too long")
            labels.append(bytes(data[off + 1 : off + 1 + length]))
            off += 1 + length
        self.offset = resume if resume >= 0 else off
        return DNSLabel(labels)


OPT = 41


def _options(data: bytes, start: int) -> list[EDNSOption]:
    """The options of the OPT record at `start`, including a zero-length last one.

    dnslib's own OPT parser stops when four bytes or fewer remain, so it loses an empty option
    at the end (an empty NSID or TCP-KEEPALIVE request, which must be echoed).
    """
    off = skip_name(data, start) + 8
    (rdlength,) = struct.unpack_from("!H", data, off)
    off += 2
    end = off + rdlength
    options: list[EDNSOption] = []
    while off + 4 <= end:
        code, length = struct.unpack_from("!HH", data, off)
        off += 4
        options.append(EDNSOption(code, bytes(data[off : off + length])))
        off += length
    return options


def _record(buf: _Buffer, data: bytes) -> RR:
    """One resource record, which must end exactly where its RDLENGTH says."""
    start = buf.offset
    rdata_at = skip_name(data, start) + 10
    (rdlength,) = struct.unpack_from("!H", data, rdata_at - 2)
    record = RR.parse(buf)
    if buf.offset != rdata_at + rdlength:
        raise DNSError("record data does not match its RDLENGTH")
    if record.rtype == OPT:
        record.rdata = _options(data, start)
    return record


def parse_message(data: bytes) -> DNSRecord:
    """Decode a walked message.

    Raises:
        DNSError: a record's data does not decode.
    """
    buf = _Buffer(data)
    try:
        header = DNSHeader.parse(buf)
        questions = [DNSQuestion.parse(buf) for _ in range(header.q)]
        rr = [_record(buf, data) for _ in range(header.a)]
        auth = [_record(buf, data) for _ in range(header.auth)]
        ar = [_record(buf, data) for _ in range(header.ar)]
    except (BufferError, IndexError, ValueError) as exc:
        raise DNSError(f"cannot decode message: {exc}") from exc
    return DNSRecord(header, questions, rr, auth=auth, ar=ar)
