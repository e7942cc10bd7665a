"""The cache handler: answer from memory, or pass the query on and keep the reply (spec §8.2).

Per query in the cache's zones: look the key (lower-case qname, qtype, qclass, DO, CD) up,
negative entries first. A fresh entry is answered at once with its remaining TTL; an expired
one within the serve_stale window is answered stale (`immediate`, refreshed in the background)
or after a failed refresh (`verify`). On a miss the query goes down the chain with a
CacheWriter that classifies the reply, stores it when it is cacheable, and passes a copy on
with every TTL set to the entry's duration (also when nothing is stored).

Background work (prefetch, stale refreshes, verifies that outlive their timeout) runs in tasks
the handler tracks and cancels on shutdown; each entry has at most one refresh in flight.
Replies this plugin stores or serves count down, so the fast path never replays them; the
offer of a reply that passed through without being stored is passed on, since the rewrite
of its TTLs is the same every time. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import ClassVar, Final

from dnslib import DNSHeader, DNSRecord

from clusterdns.chain.fastpath import Generations, HitHook, Offer
from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request, name_text
from clusterdns.chain.writer import CaptureWriter, ResponseWriter, WriterWrapper
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import match_zone
from clusterdns.dnsutil.response import (
    ResponseType,
    answers_question,
    cache_type,
    classify,
    full_rcode,
    has_soa,
    minimal_ttl,
)
from clusterdns.errors import PluginError
from clusterdns.plugins.cache.config import DENIAL, NAME, SUCCESS, CacheConfig, ClassConfig
from clusterdns.plugins.cache.metrics import CacheMetrics
from clusterdns.plugins.cache.store import AD, MAX_TTL_FIELD, Entry, Key, Store, with_ttl

log = logging.getLogger("clusterdns.plugins.cache")

VIEW: Final = ""
"""The `view` metrics label (no view plugin)."""
_UNCACHEABLE: Final = frozenset({ResponseType.OTHERERROR, ResponseType.META, ResponseType.UPDATE})
_POSITIVE: Final = frozenset({ResponseType.NOERROR, ResponseType.DELEGATION})
_NEGATIVE: Final = frozenset({ResponseType.NXDOMAIN, ResponseType.NODATA, ResponseType.SERVERERROR})


def question_matches(req: Request, msg: DNSRecord) -> bool:
    """Whether `msg` is a response to `req`'s question (one question, same name, type, class)."""
    if len(msg.questions) != 1 or not msg.header.qr:
        return False
    q = msg.questions[0]
    return (
        name_text(q.qname.label).lower() == req.name  # escaped as `Request.name`
        and int(q.qtype) == req.qtype
        and int(q.qclass) == req.qclass
    )


def storable(msg: DNSRecord, t: ResponseType, *, soa: bool, nodata: bool) -> bool:
    """Whether a reply of type `t` may be stored at all (whatever its duration and zone).

    Not stored: truncated replies, errors other than SERVFAIL/NOTIMP, transfers, NOTIFY and
    UPDATE, NXDOMAIN without a SOA, and NOERROR answers that do not answer and have no SOA.
    `soa`: the reply has a SOA in its authority section; `nodata`: its answer section does not
    answer the question.
    """
    if msg.header.tc or t in _UNCACHEABLE:
        return False
    if t is ResponseType.NXDOMAIN and not soa:
        return False
    return not (t is ResponseType.NOERROR and not soa and nodata)


def _all_ttls_are(msg: DNSRecord, ttl: int) -> bool:
    """Whether every record already carries TTL `ttl` and no OPT record is present."""
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            if rr.ttl != ttl or rr.rtype == rc.OPT:
                return False
    return True


def usable_answer(msg: DNSRecord) -> bool:
    """Whether a reply is a complete positive answer to its question (prefer_positive)."""
    return not msg.header.tc and cache_type(msg) is ResponseType.NOERROR and answers_question(msg)


def clamp(ttl_s: int, cls: ClassConfig) -> int:
    """Raise `ttl_s` to the class minimum, then cap it at the class maximum."""
    return min(max(ttl_s, cls.min_ttl_s), cls.max_ttl_s)


def refresh_request(req: Request, proto: str | None = None) -> Request:
    """A copy of `req` with the AD bit set, as the cache asks the rest of the chain.

    Asking with AD set makes an upstream report whether the data is authenticated, so one
    entry can serve both clients that want AD and clients that do not (it is cleared for
    those). `proto` overrides the transport (background refreshes ask as TCP, as CoreDNS does,
    so the reply is never truncated).
    """
    src = req.msg
    h = src.header
    msg = DNSRecord(
        DNSHeader(id=h.id, bitmap=int(h.bitmap) | AD),
        questions=list(src.questions),
        rr=list(src.rr),
        auth=list(src.auth),
        ar=list(src.ar),
    )
    sub = Request(
        msg,
        req.wire,
        proto=proto or req.proto,
        remote=req.remote,
        local=req.local,
        server=req.server,
    )
    sub.zone = req.zone
    sub.edns = req.edns
    return sub


class CacheWriter(WriterWrapper):
    """Intercepts the next plugin's reply: stores it if it may, passes on the rewritten copy.

    `send=False` keeps the reply from the client (prefetch, background verify); `verify=True`
    lets through only replies that may replace a stale entry (RFC 8767 §4): matching, not
    truncated, NOERROR or NXDOMAIN (with prefer_positive: only real answers; other replies are
    stored but not sent).
    """

    def __init__(
        self,
        inner: ResponseWriter,
        cache: Cache,
        req: Request,
        key: Key,
        *,
        ad: bool,
        send: bool = True,
        prefetch: bool = False,
        verify: bool = False,
    ) -> None:
        super().__init__(inner)
        self.cache = cache
        self.req = req
        self.key = key
        self.ad = ad
        """Whether the client asked with AD set (then AD survives in the reply)."""
        self.send = send
        self.prefetch = prefetch
        self.verify = verify
        self.held: Offer | None = None
        """A fast-path offer of the next plugin, kept until the cache knows what it stored."""
        self.passed = False
        """Whether a reply was passed to the wrapped writer."""
        self.refreshed = False
        """Whether the last reply was one that may replace a stale entry."""
        self.response: DNSRecord | None = None
        """The last reply after the rewrite (what the client gets or would get)."""
        self.entry: Entry | None = None
        """The entry the last reply was stored as, if it was."""
        self.source = ""
        """The plugin that built the last reply."""

    @property
    def do(self) -> bool:
        """The DO bit of the query (part of the key)."""
        return self.key[3]

    def offer_fastpath(self, offer: Offer) -> None:
        """Keep the offer; the cache passes it on only for a reply it did not store."""
        self.held = offer

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Classify, store and rewrite the reply; pass it on unless held back."""
        self.refreshed = False
        self.response = None
        self.entry = None
        send = self.send
        if self.verify:
            if msg.header.tc or not question_matches(self.req, msg):
                return
            if self.cache.config.prefer_positive:
                if not usable_answer(msg):
                    send = False
                else:
                    self.refreshed = True
            elif classify(msg) in _UNCACHEABLE or full_rcode(msg) not in (rc.NOERROR, rc.NXDOMAIN):
                return
            else:
                self.refreshed = True
        out, entry = self.cache.absorb(msg, self)
        if self.verify and not self.refreshed:
            return
        self.response, self.entry, self.source = out, entry, plugin
        if send:
            self.passed = True
            self.inner.write(out, plugin)


class Cache:
    """Answer from, and fill, a success and a denial cache."""

    name: ClassVar[str] = NAME

    def __init__(
        self,
        config: CacheConfig,
        nxt: Handler | None,
        *,
        metrics: CacheMetrics,
        clock: Callable[[], float] = time.monotonic,
        generations: Generations | None = None,
    ) -> None:
        self.config = config
        self.next = nxt
        self.metrics = metrics
        self.generations = generations
        self.slot = generations.slot(f"cache:{id(self)}") if generations is not None else None
        self._hooks: dict[tuple[str, str], HitHook] = {}
        self.clock = clock
        """Seconds on a monotonic scale: TTL countdown and the stores' expiry."""
        stale_s = int(config.stale.duration_s)
        self.success = Store(config.success.size, stale_s, clock)
        self.denial = Store(config.denial.size, stale_s, clock)
        self.stale_s = stale_s
        self.zones_label = config.zones_label
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    # -- the query path ---------------------------------------------------------------------------
    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Answer from the cache, or pass the query on and cache the reply."""
        if match_zone(req.name, self.config.zones) is None:
            return await next_or_failure(NAME, self.next, req, w)
        now = self.clock()
        header = req.msg.header
        do, ad = req.do, bool(header.ad)
        key: Key = (req.name, req.qtype, req.qclass, do, bool(header.cd))
        entry = self.lookup(key, now, req.server)
        if entry is None:
            return await self.miss(req, w, key, ad=ad)
        ttl = entry.ttl(now)
        stale = self.config.stale
        if ttl <= 0:
            if stale.verify:
                code = await self.verify(req, w, key, entry, now, ad=ad)
                if code is not None:
                    return code
            else:
                self.try_refresh(req, key, entry, now, stale=True)
            self.metrics.served_stale.inc((req.server, self.zones_label, VIEW))
            if stale.response_ttl_s > 0:
                ttl = stale.response_ttl_s
            elif self.config.keepttl:
                ttl = entry.orig_ttl
            else:
                ttl = 0
        else:
            if self.should_prefetch(entry, now):
                self.try_refresh(req, key, entry, now, stale=False)
            if self.config.keepttl:
                ttl = entry.orig_ttl
        w.write(entry.to_msg(req, ttl, do=do, ad=ad), NAME)
        if (
            self.slot is not None
            and self.generations is not None
            and entry.ttl(now) > 0
            and not self.config.keepttl
            and self.config.prefetch.amount == 0
        ):
            # The reply changes when its TTL counts down: replay it until the next second.
            kind = DENIAL if self.denial.find(key) is entry else SUCCESS
            expires = entry.stored + int(now - entry.stored) + 1
            hook = self._hook(req.server, kind)
            w.offer_fastpath(
                Offer(self.slot, self.generations.generation(self.slot), expires, (hook,))
            )
        return rc.NOERROR

    def _hook(self, server: str, kind: str) -> HitHook:
        """What one lookup counts for a fast-path replay: a hit of `kind`, or a miss ("").

        A miss is what a reply of a disabled zone, passed through, counted.
        """
        hook = self._hooks.get((server, kind))
        if hook is None:
            labels = (server, self.zones_label, VIEW)
            requests = self.metrics.requests.values
            second = self.metrics.hits.values if kind else self.metrics.misses.values
            key = (server, kind, self.zones_label, VIEW) if kind else labels

            def hook(proto: str, family: int) -> None:
                requests[labels] = requests.get(labels, 0) + 1
                second[key] = second.get(key, 0) + 1

            self._hooks[(server, kind)] = hook
        return hook

    def lookup(self, key: Key, now: float, server: str) -> Entry | None:
        """Find a usable entry (fresh, or within the stale window) and count the lookup.

        Negative entries come first, except that a cached SERVFAIL does not hide a usable
        positive entry, and with prefer_positive an answering positive entry wins.
        """
        labels = (server, self.zones_label, VIEW)
        self.metrics.requests.inc(labels)
        if self.config.prefer_positive and self.stale_s > 0:
            found = self.success.find(key)
            answering = found.answering_entry() if found is not None else None
            if answering is not None and self._usable(answering, now):
                self.metrics.hits.inc((server, SUCCESS, self.zones_label, VIEW))
                return answering
        negative = self.denial.find(key)
        if negative is not None and self._usable(negative, now):
            if negative.rcode == rc.SERVFAIL:
                positive = self.success.find(key)
                if positive is not None and self._usable(positive, now):
                    self.metrics.hits.inc((server, SUCCESS, self.zones_label, VIEW))
                    return positive
            self.metrics.hits.inc((server, DENIAL, self.zones_label, VIEW))
            return negative
        positive = self.success.find(key)
        if positive is not None and self._usable(positive, now):
            self.metrics.hits.inc((server, SUCCESS, self.zones_label, VIEW))
            return positive
        self.metrics.misses.inc(labels)
        return None

    def _usable(self, entry: Entry, now: float) -> bool:
        ttl = entry.ttl(now)
        return ttl > 0 or (self.stale_s > 0 and -ttl < self.stale_s)

    async def miss(self, req: Request, w: ResponseWriter, key: Key, *, ad: bool) -> int:
        """Ask the rest of the chain and cache what it writes."""
        sub = refresh_request(req)
        cw = CacheWriter(w, self, sub, key, ad=ad)
        code = await next_or_failure(NAME, self.next, sub, cw)
        if cw.held is not None and cw.passed and cw.entry is None:
            w.offer_fastpath(cw.held.with_hit(self._hook(req.server, "")))
        return code

    # -- storing --------------------------------------------------------------------------------
    def absorb(self, msg: DNSRecord, cw: CacheWriter) -> tuple[DNSRecord, Entry | None]:
        """Store a reply if it is cacheable; return its rewritten copy and the entry, if any.

        Every record of the copy carries the entry's duration as TTL, OPT records are dropped
        (the server adds its own) and AD is cleared unless the client asked with DO or AD.
        """
        cfg = self.config
        t = classify(msg)
        soa = has_soa(msg)
        answering = t is ResponseType.NOERROR and answers_question(msg)
        nodata = bool(msg.rr) and not answering
        if t is ResponseType.NOERROR and soa and nodata:
            t = ResponseType.NODATA
        duration_s: float
        if t is ResponseType.NXDOMAIN or t is ResponseType.NODATA:
            duration_s = clamp(minimal_ttl(msg, t, cfg.denial.max_ttl_s), cfg.denial)
        elif t is ResponseType.SERVERERROR:
            duration_s = cfg.servfail_s
        else:
            duration_s = clamp(minimal_ttl(msg, t, cfg.success.max_ttl_s), cfg.success)
        ttl = max(0, min(int(duration_s), MAX_TTL_FIELD))
        entry: Entry | None = None
        if duration_s > 0 and storable(msg, t, soa=soa, nodata=nodata):
            if question_matches(cw.req, msg):
                entry = self._set(msg, cw, t, ttl, answering)
            else:
                self.metrics.drops.inc((cw.req.server, self.zones_label, VIEW))
        h = msg.header
        bitmap = int(h.bitmap)
        if not cw.do and not cw.ad:
            bitmap &= ~AD
        if bitmap == h.bitmap and _all_ttls_are(msg, ttl):
            # Nothing to rewrite (the common case: a reply whose TTLs the cache does not cap):
            # the reply goes on as it is. The entry holds its own copies of the records, and
            # nothing downstream changes a message in place.
            return msg, entry
        out = DNSRecord(
            DNSHeader(id=h.id, bitmap=bitmap),
            questions=list(msg.questions),
            rr=with_ttl(msg.rr, ttl),
            auth=with_ttl(msg.auth, ttl),
            ar=with_ttl(msg.ar, ttl),
        )
        return out, entry

    def _set(
        self, msg: DNSRecord, cw: CacheWriter, t: ResponseType, ttl: int, answering: bool
    ) -> Entry | None:
        cfg = self.config
        server = cw.req.server
        entry: Entry | None = None
        if t in _POSITIVE:
            if match_zone(cw.req.name, cfg.disable_success) is None:
                entry = Entry.from_reply(msg, ttl=ttl, now=self.clock(), answering=answering)
                if cfg.prefer_positive and not entry.answering:
                    previous = self.success.find(cw.key)
                    if previous is not None:
                        entry.last_known_good = previous.answering_entry()
                if self.success.put(cw.key, entry):
                    self.metrics.evictions.inc((server, SUCCESS, self.zones_label, VIEW))
                if (not cfg.prefer_positive and cw.prefetch) or (
                    cfg.prefer_positive and entry.answering
                ):
                    self.denial.discard(cw.key)
        elif t in _NEGATIVE and match_zone(cw.req.name, cfg.disable_denial) is None:
            entry = Entry.from_reply(msg, ttl=ttl, now=self.clock(), answering=False)
            if self.denial.put(cw.key, entry):
                self.metrics.evictions.inc((server, DENIAL, self.zones_label, VIEW))
        entries = self.metrics.entries
        entries.set((server, SUCCESS, self.zones_label, VIEW), len(self.success))
        entries.set((server, DENIAL, self.zones_label, VIEW), len(self.denial))
        return entry

    def exists(self, key: Key) -> Entry | None:
        """The entry under `key` in either store (negative first), fresh or stale."""
        found = self.denial.find(key)
        return found if found is not None else self.success.find(key)

    # -- prefetch and stale refreshes -----------------------------------------------------------
    def should_prefetch(self, entry: Entry, now: float) -> bool:
        """Count a hit; True when the entry is popular and its TTL is low enough to refresh."""
        prefetch = self.config.prefetch
        if prefetch.amount <= 0:
            return False
        hits = entry.count_hit(prefetch.window_s, now)
        threshold = math.ceil(prefetch.percentage / 100 * entry.orig_ttl)
        return hits >= prefetch.amount and entry.ttl(now) <= threshold

    def try_refresh(self, req: Request, key: Key, entry: Entry, now: float, *, stale: bool) -> None:
        """Start a background refresh of `entry` unless one runs or a failure recheck holds."""
        recheck_s = self.config.stale.recheck_s if stale else 0.0
        if self.closed or not entry.begin_refresh(self.clock(), recheck_s):
            return
        sub = refresh_request(req, proto="tcp")
        self.spawn(self._refresh(sub, key, entry, now, stale=stale, recheck_s=recheck_s))

    async def _refresh(
        self, sub: Request, key: Key, entry: Entry, now: float, *, stale: bool, recheck_s: float
    ) -> None:
        """Run `sub` (a TCP copy of the query) through the rest of the chain and store the reply.

        A stale refresh counts only if the reply may replace a stale entry; a prefetch always
        counts. Either way the new entry inherits the old one's hit count.
        """
        refreshed = False
        try:
            self.metrics.prefetch.inc((sub.server, self.zones_label, VIEW))
            capture = CaptureWriter("tcp", sub.remote, sub.local)
            cw = CacheWriter(
                capture, self, sub, key, ad=True, send=False, prefetch=True, verify=stale
            )
            try:
                await next_or_failure(NAME, self.next, sub, cw)
            except PluginError as exc:
                log.debug("refresh of %s %s failed: %s", sub.name, sub.type_name, exc)
            refreshed = cw.refreshed if stale else True
        except Exception:
            log.exception("refresh of %s %s failed", sub.name, sub.type_name)
        finally:
            if refreshed:
                fresh = self.exists(key)
                if fresh is not None:
                    fresh.hits, fresh.last_hit = entry.hits, now
            entry.end_refresh(self.clock(), recheck_s, refreshed)

    async def verify(
        self, req: Request, w: ResponseWriter, key: Key, entry: Entry, now: float, *, ad: bool
    ) -> int | None:
        """Refresh a stale entry before answering (serve_stale verify).

        Returns:
            The rcode when the refresh produced the answer (already written), or None when the
            stale entry must be served: the refresh failed, timed out, or could not start.
        """
        stale = self.config.stale
        recheck_s = stale.recheck_s
        if recheck_s > 0 and not entry.begin_refresh(now, recheck_s):
            return None
        sub = refresh_request(req)
        if stale.verify_timeout_s <= 0:
            cw = CacheWriter(w, self, sub, key, ad=ad, verify=True)
            code = rc.SERVFAIL
            try:
                code = await next_or_failure(NAME, self.next, sub, cw)
            except PluginError as exc:
                log.debug("verify of %s %s failed: %s", req.name, req.type_name, exc)
            finally:
                if recheck_s > 0:
                    entry.end_refresh(self.clock(), recheck_s, cw.refreshed)
            return code if cw.refreshed else None
        if self.closed:
            if recheck_s > 0:
                entry.end_refresh(self.clock(), recheck_s, False)
            return None
        capture = CaptureWriter(req.proto, req.remote, req.local)
        cw = CacheWriter(capture, self, sub, key, ad=ad, send=False, verify=True)
        task = self.spawn(self._verify_in_background(sub, cw, entry, recheck_s))
        done, _ = await asyncio.wait({task}, timeout=stale.verify_timeout_s)
        if not done or not cw.refreshed:
            return None
        if cw.entry is not None:
            fresh = cw.entry
            ttl = fresh.orig_ttl if self.config.keepttl else fresh.ttl(self.clock())
            w.write(fresh.to_msg(req, ttl, do=key[3], ad=ad), NAME)
        elif cw.response is not None:
            w.write(cw.response, cw.source)
        return rc.NOERROR

    async def _verify_in_background(
        self, sub: Request, cw: CacheWriter, entry: Entry, recheck_s: float
    ) -> None:
        try:
            await next_or_failure(NAME, self.next, sub, cw)
        except PluginError as exc:
            log.debug("verify of %s %s failed: %s", sub.name, sub.type_name, exc)
        except Exception:
            log.exception("verify of %s %s failed", sub.name, sub.type_name)
        finally:
            if recheck_s > 0:
                entry.end_refresh(self.clock(), recheck_s, cw.refreshed)

    # -- background tasks -----------------------------------------------------------------------
    def spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """Run `work` as a tracked background task."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait until every background task running now has finished."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel the background tasks and wait for them to end (shutdown hook)."""
        self.closed = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
