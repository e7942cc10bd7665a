"""Cache entries and the bounded, per-entry-expiring store that holds them.

An Entry is one stored reply: its rcode, the RA/AD bits, the three sections (OPT excluded)
with every TTL already set to the entry's duration, when it was stored, and the bookkeeping
for prefetch (hit frequency) and refreshes (at most one in flight, failure recheck). A Store
is a `cachetools.TLRUCache` whose time-to-use is the entry's end of life (duration, plus the
serve_stale window), whose timer is the cache's injected clock, and which counts the entries
it evicts because it is full. Loop-thread only: cachetools is not thread-safe.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Final

from cachetools import TLRUCache
from dnslib import RR, DNSHeader, DNSRecord

from clusterdns.chain.request import Request
from clusterdns.dnsutil import rcode as rc

Key = tuple[str, int, int, bool, bool]
"""Lower-case qname, qtype, qclass, DO bit, CD bit of the query."""

MAX_TTL_FIELD: Final = 0xFFFFFFFF
# Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2).
QR_AA: Final = 0x8400
RA: Final = 0x0080
AD: Final = 0x0020
QUERY_BITS: Final = 0x7810 | 0x0100
"""What a hit copies from the query: opcode, RD and CD."""


def copy_rr(rr: RR, ttl: int) -> RR:
    """A copy of a record with another TTL.

    A shallow copy of the record's attributes: owner name and rdata objects are shared (nobody
    mutates them in place).
    """
    new: RR = RR.__new__(RR)
    new.__dict__.update(rr.__dict__)
    new.ttl = ttl
    return new


def with_ttl(rrs: Iterable[RR], ttl: int) -> list[RR]:
    """Copies of `rrs` without OPT records, every one with TTL `ttl`."""
    return [copy_rr(rr, ttl) for rr in rrs if rr.rtype != rc.OPT]


class Entry:
    """One stored reply. Loop-thread only."""

    __slots__ = (
        "ad",
        "answer",
        "answering",
        "extra",
        "hits",
        "last_hit",
        "last_known_good",
        "ns",
        "orig_ttl",
        "ra",
        "rcode",
        "refreshing",
        "retry_after",
        "stored",
    )

    def __init__(
        self,
        *,
        rcode: int,
        ad: bool,
        ra: bool,
        answer: list[RR],
        ns: list[RR],
        extra: list[RR],
        answering: bool,
        orig_ttl: int,
        stored: float,
    ) -> None:
        self.rcode = rcode
        self.ad = ad
        self.ra = ra
        self.answer = answer
        self.ns = ns
        self.extra = extra
        self.answering = answering
        """Whether the reply answers its question (serve_stale_policy prefer_positive)."""
        self.orig_ttl = orig_ttl
        """The duration the entry was stored for, whole seconds."""
        self.stored = stored
        """Clock reading when it was stored."""
        self.last_known_good: Entry | None = None
        """An answering entry this non-answering one replaced (prefer_positive only)."""
        self.hits = 0
        self.last_hit = -math.inf
        self.refreshing = False
        self.retry_after = -math.inf

    @classmethod
    def from_reply(cls, msg: DNSRecord, *, ttl: int, now: float, answering: bool) -> Entry:
        """Store `msg` for `ttl` seconds from `now`; its records are copied with TTL `ttl`."""
        h = msg.header
        return cls(
            rcode=int(h.rcode),
            ad=bool(h.ad),
            ra=bool(h.ra),
            answer=with_ttl(msg.rr, ttl),
            ns=with_ttl(msg.auth, ttl),
            extra=with_ttl(msg.ar, ttl),
            answering=answering,
            orig_ttl=ttl,
            stored=now,
        )

    def ttl(self, now: float) -> int:
        """Remaining seconds: stored duration minus whole seconds elapsed (<= 0: expired)."""
        return self.orig_ttl - int(now - self.stored)

    def to_msg(self, req: Request, ttl: int, *, do: bool, ad: bool) -> DNSRecord:
        """The reply to `req` built from this entry, every record with TTL `ttl`.

        Question and ID come from the query, RD and CD too; AA is always set (old glibc stubs
        drop non-authoritative replies); RA as stored; AD as stored but only if the query had
        DO or AD set.
        """
        q = req.msg.header
        bitmap = (int(q.bitmap) & QUERY_BITS) | QR_AA | (self.rcode & 0xF)
        if self.ra:
            bitmap |= RA
        if self.ad and (do or ad):
            bitmap |= AD
        header = DNSHeader(id=q.id, bitmap=bitmap)
        ttl = max(0, min(ttl, MAX_TTL_FIELD))
        return DNSRecord(
            header,
            questions=list(req.msg.questions[:1]),
            rr=[copy_rr(rr, ttl) for rr in self.answer],
            auth=[copy_rr(rr, ttl) for rr in self.ns],
            ar=[copy_rr(rr, ttl) for rr in self.extra],
        )

    def answering_entry(self) -> Entry | None:
        """Return this entry if it answers its question, else the last known good one, if any."""
        if self.answering:
            return self
        if self.last_known_good is not None and self.last_known_good.answering:
            return self.last_known_good
        return None

    def count_hit(self, window_s: float, now: float) -> int:
        """Count a hit: consecutive hits no more than `window_s` apart add up, a gap resets to 1."""
        if self.last_hit < now - window_s:
            self.hits = 1
        else:
            self.hits += 1
        self.last_hit = now
        return self.hits

    def begin_refresh(self, now: float, recheck_s: float) -> bool:
        """Claim the entry's one refresh slot; False while one runs or a failure recheck holds."""
        if recheck_s > 0 and now < self.retry_after:
            return False
        if self.refreshing:
            return False
        self.refreshing = True
        return True

    def end_refresh(self, now: float, recheck_s: float, refreshed: bool) -> None:
        """Release the refresh slot; a failed refresh blocks retries for `recheck_s`."""
        self.retry_after = now + recheck_s if recheck_s > 0 and not refreshed else -math.inf
        self.refreshing = False


class Store(TLRUCache[Key, Entry, float]):
    """A bounded map of entries, each usable until its TTL plus the stale window has passed.

    When full, expired entries go first, then the least recently used one (counted in
    `evictions`). Loop-thread only.
    """

    def __init__(self, size: int, stale_s: int, clock: Callable[[], float]) -> None:
        super().__init__(maxsize=size, ttu=self._end_of_life, timer=clock)
        self.stale_s = stale_s
        """Whole seconds an entry stays after it expired, for serve_stale; 0 = none."""
        self.evictions = 0

    def _end_of_life(self, key: Key, entry: Entry, now: float) -> float:
        return entry.stored + entry.orig_ttl + self.stale_s

    def popitem(self) -> tuple[Key, Entry]:
        """Evict the least recently used entry because the store is full."""
        item = super().popitem()
        self.evictions += 1
        return item

    def put(self, key: Key, entry: Entry) -> int:
        """Store `entry` under `key`; return how many other entries were evicted for it."""
        before = self.evictions
        self[key] = entry
        return self.evictions - before

    def find(self, key: Key) -> Entry | None:
        """The entry under `key` if it is still within its life (fresh or stale), else None."""
        try:
            return self[key]
        except KeyError:
            return None

    def discard(self, key: Key) -> None:
        """Remove the entry under `key`, if there is one."""
        with contextlib.suppress(KeyError):
            del self[key]
