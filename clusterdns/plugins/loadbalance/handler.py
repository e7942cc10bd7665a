"""The `loadbalance` handler: wrap the writer so NOERROR replies leave with addresses reordered.

Reordering never changes the message a later plugin built (cache may hold it): the wrapper builds a
new message with new section lists around the same, unchanged records. A reply whose order was
left to chance is never offered to the fast path, which would replay one order forever; replies
that come out the same every time (one address, NXDOMAIN) keep their offer.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from typing import ClassVar, Final, Protocol

from dnslib import RR, DNSRecord

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter, WriterWrapper, copy_header, full_rcode
from clusterdns.dnsutil import rcode as rc
from clusterdns.plugins.loadbalance.config import Network

NAME: Final = "loadbalance"

Shuffle = Callable[[list[RR]], None]
"""Shuffles a list in place (random.Random.shuffle)."""


class Reorder(Protocol):
    """A policy: reorder the sections of a NOERROR reply."""

    def __call__(self, msg: DNSRecord) -> tuple[DNSRecord, bool]:
        """Return the reordered reply and whether its order depends on chance.

        The reply is a new message, or `msg` itself when nothing moved.
        """
        ...


def split_section(records: Sequence[RR]) -> tuple[list[RR], list[RR], list[RR], list[RR]]:
    """Split records into (CNAME, other, A and AAAA, MX), each in the original order."""
    cname: list[RR] = []
    other: list[RR] = []
    address: list[RR] = []
    mx: list[RR] = []
    for rr in records:
        rtype = rr.rtype
        if rtype == rc.CNAME:
            cname.append(rr)
        elif rtype == rc.A or rtype == rc.AAAA:
            address.append(rr)
        elif rtype == rc.MX:
            mx.append(rr)
        else:
            other.append(rr)
    return cname, other, address, mx


def round_robin(records: Sequence[RR], shuffle: Shuffle) -> tuple[list[RR], bool]:
    """Reorder one section as CoreDNS's round_robin does; return it and whether chance played.

    Sections of 0 or 1 records are left alone. Otherwise: CNAMEs first (original order), then
    records that are not A/AAAA/MX (original order), then A and AAAA shuffled together, then MX
    shuffled (a section of only A, or only AAAA, is simply shuffled).
    """
    if len(records) <= 1:
        return list(records), False
    cname, other, address, mx = split_section(records)
    shuffle(address)
    shuffle(mx)
    return cname + other + address + mx, len(address) > 1 or len(mx) > 1


def _ip_of(rr: RR) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if rr.rtype not in (rc.A, rc.AAAA):
        return None
    try:
        ip = ipaddress.ip_address(str(rr.rdata))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def prefer_subnets(records: Sequence[RR], networks: Sequence[Network]) -> list[RR]:
    """Move addresses inside `networks` to the front, in network priority order.

    As CoreDNS's `prefer`: the section becomes CNAMEs, addresses (matching ones first, by the
    first network that contains them, then the rest), MX, then every other record.
    """
    cname, other, address, mx = split_section(records)
    ips = [_ip_of(rr) for rr in address]
    taken = [False] * len(address)
    preferred: list[RR] = []
    for net in networks:
        for i, rr in enumerate(address):
            ip = ips[i]
            if not taken[i] and ip is not None and ip.version == net.version and ip in net:
                preferred.append(rr)
                taken[i] = True
    rest = [rr for i, rr in enumerate(address) if not taken[i]]
    return cname + preferred + rest + mx + other


def same(a: Sequence[RR], b: Sequence[RR]) -> bool:
    """Whether two sections hold the very same record objects in the same order."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def with_sections(
    msg: DNSRecord, answer: list[RR], authority: list[RR], additional: list[RR]
) -> DNSRecord:
    """A new message with `msg`'s header and question and the given sections."""
    return DNSRecord(
        copy_header(msg.header),
        questions=list(msg.questions),
        rr=answer,
        auth=authority,
        ar=additional,
    )


class RoundRobin:
    """The round_robin policy, optionally followed by `prefer`."""

    def __init__(self, rng: random.Random | None = None, prefer: Sequence[Network] = ()) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.prefer = tuple(prefer)

    def __call__(self, msg: DNSRecord) -> tuple[DNSRecord, bool]:
        """Shuffle every section, then apply `prefer` to the answer and additional sections."""
        shuffle = self.rng.shuffle
        answer, a_random = round_robin(msg.rr, shuffle)
        authority, n_random = round_robin(msg.auth, shuffle)
        additional, x_random = round_robin(msg.ar, shuffle)
        if self.prefer:
            answer = prefer_subnets(answer, self.prefer)
            additional = prefer_subnets(additional, self.prefer)
        by_chance = a_random or n_random or x_random
        if same(answer, msg.rr) and same(authority, msg.auth) and same(additional, msg.ar):
            return msg, by_chance
        return with_sections(msg, answer, authority, additional), by_chance


def eligible(msg: DNSRecord) -> bool:
    """Whether a reply is reordered at all: NOERROR, and not a zone transfer."""
    if full_rcode(msg) != rc.NOERROR:
        return False
    return not (msg.questions and int(msg.q.qtype) in (rc.AXFR, rc.IXFR))


class LoadBalanceWriter(WriterWrapper):
    """Reorders the reply on its way out; forwards a fast-path offer only for fixed orders."""

    def __init__(self, inner: ResponseWriter, reorder: Reorder) -> None:
        super().__init__(inner)
        self.reorder = reorder
        self._offer: Offer | None = None
        self._source: DNSRecord | None = None
        self._replayable: bool | None = None
        """None until written; then whether the reply would come out the same every time."""

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Reorder an eligible reply (into a new message) and pass it on."""
        out, by_chance = self.reorder(msg) if eligible(msg) else (msg, False)
        first = self._replayable is None
        if first:
            self._replayable = not by_chance
            self._source = msg
        self.inner.write(out, plugin)
        if first and self._offer is not None:
            self.offer_fastpath(self._offer)

    def offer_fastpath(self, offer: Offer) -> None:
        """Hold the offer until the reply is known.

        For an order left to chance, other orders go with it, so replays keep changing it.
        """
        if self._replayable is None:
            self._offer = offer
        elif self._replayable:
            self.inner.offer_fastpath(offer)
        else:
            self.inner.offer_fastpath(offer.with_variants(self._variants))

    def _variants(self, n: int) -> list[DNSRecord]:
        """`n` more reorderings of the reply as the next plugin wrote it."""
        assert self._source is not None
        return [self.reorder(self._source)[0] for _ in range(n)]


class LoadBalance:
    """Reorder the records of replies from the plugins after this one."""

    name: ClassVar[str] = NAME

    def __init__(self, reorder: Reorder, nxt: Handler | None) -> None:
        self.reorder = reorder
        self.next = nxt

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Pass the query on with a reordering writer."""
        return await next_or_failure(NAME, self.next, req, LoadBalanceWriter(w, self.reorder))
