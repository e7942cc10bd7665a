"""What the query log says about a reply: its class and its uncompressed size.

Pure functions over dnslib messages; they never change the message they are given.
"""

from __future__ import annotations

import enum

from dnslib import DNSBuffer, DNSRecord

from clusterdns.dnsutil import rcode as rc

OPCODE_NOTIFY = 4
OPCODE_UPDATE = 5
HEADER_BYTES = 12


class ResponseClass(enum.Enum):
    """The classes a `class` line selects (`all` selects every reply)."""

    ALL = "all"
    SUCCESS = "success"
    DENIAL = "denial"
    ERROR = "error"


def classify(msg: DNSRecord | None, rcode: int) -> ResponseClass:
    """Classify a reply (spec §13); `rcode` is its full rcode, None `msg` means no reply.

    success: NOERROR with answers, or with an empty answer and no SOA in authority (referrals
    too). denial: NXDOMAIN without answers, or NOERROR with an empty answer and a SOA.
    error: everything else, including no reply, an NXDOMAIN with answers, NOTIFY, UPDATE and
    zone transfers.
    """
    if msg is None:
        return ResponseClass.ERROR
    if int(msg.header.opcode) in (OPCODE_NOTIFY, OPCODE_UPDATE):
        return ResponseClass.ERROR
    if msg.questions and int(msg.questions[0].qtype) in (rc.AXFR, rc.IXFR):
        return ResponseClass.ERROR
    if rcode == rc.NXDOMAIN:
        return ResponseClass.ERROR if msg.rr else ResponseClass.DENIAL
    if rcode != rc.NOERROR:
        return ResponseClass.ERROR
    if msg.rr:
        return ResponseClass.SUCCESS
    if any(int(rr.rtype) == rc.SOA for rr in msg.auth):
        return ResponseClass.DENIAL
    return ResponseClass.SUCCESS


class _FlatBuffer(DNSBuffer):  # type: ignore[misc]
    """A dnslib buffer that never compresses names."""

    encode_name = DNSBuffer.encode_name_nocompress


def uncompressed_size(msg: DNSRecord) -> int:
    """The size of `msg` packed without name compression (the log's `{rsize}`)."""
    buf = _FlatBuffer()
    for q in msg.questions:
        q.pack(buf)
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            rr.pack(buf)
    return HEADER_BYTES + len(buf.data)
