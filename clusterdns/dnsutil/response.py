"""What kind of reply a message is: the classification `cache` and `log` share (spec §8.2, §13).

`classify` sorts a reply into a ResponseType the way CoreDNS's `response.Typify` does;
`class_of` folds a type into the success / denial / error classes a `log` rule selects.
`answers_question`, `has_soa` and `minimal_ttl` are the further facts the cache needs to
decide what to store and for how long. Everything here is a pure function over dnslib
messages: nothing reads a clock unless no time is passed, and no message is changed.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from typing import Final

from dnslib import RR, DNSBuffer, DNSRecord

from clusterdns.dnsutil import rcode as rc

OPCODE_NOTIFY: Final = 4
OPCODE_UPDATE: Final = 5
RRSIG: Final = 46
MINIMAL_TTL_S: Final = 5
"""The shortest TTL CoreDNS hands out (dnsutil.MinimalDefaultTTL); also the fail-safe TTL."""
MAXIMAL_TTL_S: Final = 3600
"""The longest TTL CoreDNS caches by default (dnsutil.MaximumDefaultTTL)."""
_YEAR68: Final = 1 << 31
"""Half the 32-bit serial space: RRSIG times compare in RFC 1982 serial arithmetic."""


class ResponseType(enum.Enum):
    """The kind of a reply (CoreDNS response.Type)."""

    NOERROR = "NOERROR"
    """A positive answer, or NOERROR without SOA or NS in the authority section."""
    NXDOMAIN = "NXDOMAIN"
    """Name error: NXDOMAIN without answer records."""
    SERVERERROR = "SERVERERROR"
    """SERVFAIL or NOTIMP: errors the cache may keep for a short while."""
    NODATA = "NODATA"
    """NOERROR, no answer, SOA in the authority section."""
    DELEGATION = "DELEGATION"
    """NOERROR, no answer, NS records (a referral) in the authority section."""
    META = "META"
    """NOTIFY, or a zone transfer (AXFR/IXFR)."""
    UPDATE = "UPDATE"
    """A dynamic update message."""
    OTHERERROR = "OTHERERROR"
    """Anything else: REFUSED, FORMERR, NXDOMAIN with answers, expired signatures with DO."""


class ResponseClass(enum.Enum):
    """The classes a `log` rule selects (`all` selects every reply)."""

    ALL = "all"
    SUCCESS = "success"
    DENIAL = "denial"
    ERROR = "error"


def class_of(t: ResponseType) -> ResponseClass:
    """Fold a reply type into its class: success, denial or error (CoreDNS response.Classify)."""
    if t in (ResponseType.NOERROR, ResponseType.DELEGATION):
        return ResponseClass.SUCCESS
    if t in (ResponseType.NXDOMAIN, ResponseType.NODATA):
        return ResponseClass.DENIAL
    return ResponseClass.ERROR


def full_rcode(msg: DNSRecord) -> int:
    """The rcode of `msg` including the extended bits an OPT record carries."""
    code = int(msg.header.rcode)
    for rr in msg.ar:
        if rr.rtype == rc.OPT:
            code |= ((int(rr.ttl) >> 24) & 0xFF) << 4
    return code


def _reply_do(msg: DNSRecord) -> bool:
    for rr in msg.ar:
        if rr.rtype == rc.OPT:
            return bool(int(rr.ttl) & 0x8000)
    return False


def classify(msg: DNSRecord | None, now: float | None = None) -> ResponseType:
    """Classify a reply as CoreDNS's `response.Typify` does.

    Args:
        msg: the reply; None (no reply) is OTHERERROR.
        now: Unix time for checking RRSIG validity periods (only when the reply's OPT has DO);
            the wall clock when None.
    """
    if msg is None:
        return ResponseType.OTHERERROR
    opcode = int(msg.header.opcode)
    if opcode == OPCODE_UPDATE:
        return ResponseType.UPDATE
    if opcode == OPCODE_NOTIFY:
        return ResponseType.META
    if msg.questions and int(msg.questions[0].qtype) in (rc.AXFR, rc.IXFR):
        return ResponseType.META
    if _reply_do(msg) and _has_expired_signature(msg, time.time() if now is None else now):
        return ResponseType.OTHERERROR
    code = full_rcode(msg)
    if msg.rr:
        if code == rc.NOERROR:
            return ResponseType.NOERROR
        if code == rc.NXDOMAIN:
            return ResponseType.OTHERERROR
    soa = False
    ns = 0
    for rr in msg.auth:
        if rr.rtype == rc.SOA:
            soa = True
        elif rr.rtype == rc.NS:
            ns += 1
    if soa and code == rc.NOERROR:
        return ResponseType.NODATA
    if code == rc.NXDOMAIN:
        return ResponseType.NXDOMAIN
    if code in (rc.SERVFAIL, rc.NOTIMP):
        return ResponseType.SERVERERROR
    if ns > 0 and code == rc.NOERROR:
        return ResponseType.DELEGATION
    if code == rc.NOERROR:
        return ResponseType.NOERROR
    return ResponseType.OTHERERROR


def _has_expired_signature(msg: DNSRecord, now: float) -> bool:
    """Whether any RRSIG in the reply is outside its validity period at `now`."""
    utc = int(now)
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            if rr.rtype != RRSIG:
                continue
            inception = int(rr.rdata.sig_inc)
            expiration = int(rr.rdata.sig_exp)
            # Times are 32-bit serials (RFC 4034 §3.1.5): lift them into the window around now.
            ti = inception + _trunc_div(inception - utc, _YEAR68) * _YEAR68
            te = expiration + _trunc_div(expiration - utc, _YEAR68) * _YEAR68
            if not ti <= utc <= te:
                return True
    return False


def _trunc_div(a: int, b: int) -> int:
    """Integer division rounding toward zero (as Go's `/` on integers)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def has_soa(msg: DNSRecord) -> bool:
    """Whether the authority section holds a SOA record."""
    return any(rr.rtype == rc.SOA for rr in msg.auth)


def _owner(rr: RR) -> str:
    return str(rr.rname).lower()


def _class_fits(rr_class: int, qclass: int) -> bool:
    return qclass == rc.ANY or rr_class == qclass


def _cname_target(answer: Iterable[RR], owner: str, qclass: int) -> str | None:
    """The one canonical name `owner` is aliased to: "" for none, None for several (invalid)."""
    target = ""
    for rr in answer:
        if rr.rtype != rc.CNAME or not _class_fits(int(rr.rclass), qclass) or _owner(rr) != owner:
            continue
        this = str(rr.rdata.label).lower()
        if target and target != this:
            return None
        target = this
    return target


def _terminal_name(answer: list[RR], name: str, qclass: int) -> str | None:
    """Follow the CNAME chain from `name`; None when it loops or forks (no terminal name)."""
    seen: set[str] = set()
    while True:
        if name in seen:
            return None
        seen.add(name)
        target = _cname_target(answer, name, qclass)
        if target is None:
            return None
        if not target:
            return name
        name = target


def answers_question(msg: DNSRecord) -> bool:
    """Whether a NOERROR reply answers its question.

    For most types a record of the queried type must sit at the end of the CNAME chain that
    starts at the question name; a CNAME query needs a CNAME at the name, an ANY query any
    record at the name (in the question's class).
    """
    if not msg.questions or not msg.rr or full_rcode(msg) != rc.NOERROR:
        return False
    q = msg.questions[0]
    qtype, qclass = int(q.qtype), int(q.qclass)
    answer = list(msg.rr)
    if qtype not in (rc.ANY, rc.CNAME) and all(rr.rtype != rc.CNAME for rr in answer):
        # No alias: the chain ends at the question name. Owners that repeat the question's
        # labels byte for byte (what servers send) settle it without building text.
        labels = q.qname.label
        for rr in answer:
            if rr.rtype == qtype and rr.rname.label == labels and _class_fits(rr.rclass, qclass):
                return True
    name = str(q.qname).lower()
    if qtype == rc.ANY:
        return any(_class_fits(int(rr.rclass), qclass) and _owner(rr) == name for rr in answer)
    if qtype == rc.CNAME:
        return bool(_cname_target(answer, name, qclass))
    terminal = _terminal_name(answer, name, qclass)
    if terminal is None:
        return False
    return any(
        rr.rtype == qtype and _class_fits(int(rr.rclass), qclass) and _owner(rr) == terminal
        for rr in answer
    )


def is_nodata(msg: DNSRecord) -> bool:
    """Whether a reply has answer records that do not answer its question.

    An empty answer section is not NODATA in this sense: its data may sit in another section,
    as whoami's does.
    """
    return bool(msg.rr) and not answers_question(msg)


def cache_type(msg: DNSRecord, now: float | None = None) -> ResponseType:
    """`classify`, except that NOERROR with a non-answering answer section and a SOA is NODATA.

    This is the type the cache files a reply under (RFC 2308: a CNAME chain that ends without
    the queried type is a negative answer when a SOA bounds it).
    """
    t = classify(msg, now)
    if t is ResponseType.NOERROR and has_soa(msg) and is_nodata(msg):
        return ResponseType.NODATA
    return t


def minimal_ttl(msg: DNSRecord, t: ResponseType, maximum_s: int) -> int:
    """The smallest TTL of the reply's records, at most `maximum_s` (OPT records excluded).

    Replies other than NOERROR, NXDOMAIN and NODATA (referrals, errors), and replies without
    any record, get the fail-safe MINIMAL_TTL_S whatever their records say.
    """
    if t not in (ResponseType.NOERROR, ResponseType.NXDOMAIN, ResponseType.NODATA):
        return MINIMAL_TTL_S
    if not msg.rr and not msg.auth and all(rr.rtype == rc.OPT for rr in msg.ar):
        return MINIMAL_TTL_S
    lowest = maximum_s
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            if rr.rtype != rc.OPT and int(rr.ttl) < lowest:
                lowest = int(rr.ttl)
    return lowest


_HEADER_BYTES = 12


class _FlatBuffer(DNSBuffer):  # type: ignore[misc]
    """A dnslib buffer that never compresses names."""

    encode_name = DNSBuffer.encode_name_nocompress


def uncompressed_size(msg: DNSRecord) -> int:
    """The size of `msg` packed without name compression (the log's `{rsize}`, as miekg's Len)."""
    buf = _FlatBuffer()
    for q in msg.questions:
        q.pack(buf)
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            rr.pack(buf)
    return _HEADER_BYTES + len(buf.data)
