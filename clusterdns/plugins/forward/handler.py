"""Forward: the handler of one `forward` line (spec §7.2, §7.3, deviation Q33).

Per query: outside FROM or under `except` -> next plugin; over `max_concurrent` -> REFUSED;
identical to a query already in flight upstream -> wait for its result (merged); else walk the
upstreams in policy order within the attempt cap and the 5 s budget, and relay the reply with
the client's ID and question (the server's writer then mirrors EDNS and truncates). The handler
is also the block's UpstreamRegistry for this line, so `loop` can quarantine an upstream.
Loop-thread only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from dnslib import RR, DNSRecord

from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter, copy_header, full_rcode
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import is_subdomain
from clusterdns.errors import PluginError
from clusterdns.plugins.forward.config import NAME, ForwardConfig, Policy
from clusterdns.plugins.forward.metrics import Shared
from clusterdns.plugins.forward.proxy import Proxy
from clusterdns.plugins.forward.transport import ExchangeError, InvalidRequest, UpstreamQuery

BUDGET_S: Final = 5.0
"""Overall time allowed for one client query across all attempts."""
SWEEP_MAX_S: Final = 10.0
"""Longest pause between sweeps of expired idle connections."""

UNMERGED_TYPES: Final = frozenset({rc.HINFO})
"""Query types never merged: the `loop` plugin's HINFO probe must be able to pass through this
line again when an upstream sends it back, or the loop would go unseen."""

MergeKey = tuple[str, int, int, int, int, int, int, bool, bool, tuple[tuple[int, bytes], ...], str]


@dataclass(frozen=True, slots=True)
class Relay:
    """Write this upstream reply (personalised per client)."""

    reply: DNSRecord


@dataclass(frozen=True, slots=True)
class PassOn:
    """Hand the query to the next `forward` line (`next`, `next_on_nodata`)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Return this error up the chain; the server answers with its rcode."""

    message: str
    rcode: int = rc.SERVFAIL
    bare: bool = True

    def error(self) -> PluginError:
        """A fresh exception for one client."""
        return PluginError(NAME, self.message, rcode=self.rcode, bare=self.bare)


Outcome = Relay | PassOn | Failure


class _Flight:
    """An upstream query in flight and how many identical queries joined it."""

    __slots__ = ("future", "joined")

    def __init__(self, future: asyncio.Future[Outcome]) -> None:
        self.future = future
        self.joined = 0


def merge_key(req: Request) -> MergeKey:
    """What two queries must share to be answered by one upstream query."""
    h = req.msg.header
    edns = req.edns
    return (
        req.name,
        req.qtype,
        req.qclass,
        int(h.opcode),
        int(h.rd),
        int(h.cd),
        int(h.ad),
        edns is not None,
        edns is not None and edns.do,
        edns.options if edns is not None else (),
        req.proto,
    )


def personalise(reply: DNSRecord, req: Request, *, shared: bool = True) -> DNSRecord:
    """A copy of `reply` with the client's ID and question (and no OPT if it sent none).

    When the reply is `shared` by merged queries its records are copied too, because writers
    further up (rewrite's TTL rules) may change a record in place; a reply only this query
    uses keeps its record objects.
    """
    header = copy_header(reply.header)
    header.id = req.id
    ar = reply.ar if req.edns is not None else [rr for rr in reply.ar if rr.rtype != rc.OPT]
    if not shared:
        return DNSRecord(
            header, questions=list(req.msg.questions), rr=reply.rr, auth=reply.auth, ar=list(ar)
        )
    return DNSRecord(
        header,
        questions=list(req.msg.questions),
        rr=[_copy(rr) for rr in reply.rr],
        auth=[_copy(rr) for rr in reply.auth],
        ar=[_copy(rr) for rr in ar],
    )


def _copy(rr: RR) -> RR:
    return RR(rr.rname, rr.rtype, rr.rclass, rr.ttl, rr.rdata)


class Forward:
    """One `forward` line: match, limit, merge, try upstreams, relay."""

    name: ClassVar[str] = NAME

    def __init__(
        self,
        config: ForwardConfig,
        proxies: Sequence[Proxy],
        shared: Shared,
        nxt: Handler | None = None,
    ) -> None:
        self.config = config
        self.proxies = tuple(proxies)
        self.shared = shared
        self.metrics = shared.metrics
        self.next = nxt
        self.concurrent = 0
        """Queries of this line in flight (checked against `max_concurrent`)."""
        self._robin = 0
        self._inflight: dict[MergeKey, _Flight] = {}
        self._attempts: dict[str, dict[str, int]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- matching --------------------------------------------------------------------------------
    def match(self, name: str) -> bool:
        """Whether this line forwards lower-case absolute `name` (FROM, minus `except`)."""
        if not is_subdomain(name, self.config.from_zone):
            return False
        if name == self.config.from_zone:
            return True
        return not any(is_subdomain(name, zone) for zone in self.config.ignored)

    # -- serving ---------------------------------------------------------------------------------
    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Forward the query, or pass it on when this line does not cover it."""
        if not self.match(req.name):
            return await next_or_failure(NAME, self.next, req, w)
        limit = self.config.max_concurrent
        if limit and self.concurrent >= limit:
            self.metrics.max_concurrent_rejects.inc()
            raise PluginError(
                NAME, f"concurrent queries exceeded maximum {limit}", rcode=rc.REFUSED, bare=True
            )
        self.concurrent += 1
        try:
            outcome, shared = await self._outcome(req)
        finally:
            self.concurrent -= 1
        if isinstance(outcome, Relay):
            msg = personalise(outcome.reply, req, shared=shared)
            w.write(msg, NAME)
            return full_rcode(msg)
        if isinstance(outcome, PassOn):
            return await next_or_failure(NAME, self.next, req, w)
        raise outcome.error()

    async def _outcome(self, req: Request) -> tuple[Outcome, bool]:
        """Join an identical query in flight, or resolve this one as the leader.

        Also says whether the outcome is shared with merged queries.
        """
        key = merge_key(req) if req.qtype not in UNMERGED_TYPES else None
        joined = self._inflight.get(key) if key is not None else None
        if joined is not None:
            self.metrics.merged_requests.inc()
            joined.joined += 1
            return await asyncio.shield(joined.future), True
        pending = self.shared.pending
        if not pending.try_acquire():
            self.metrics.pending_rejects.inc()
            failure = Failure(
                f"too many pending upstream queries (limit {pending.limit})",
                rcode=rc.REFUSED,
                bare=False,
            )
            return failure, False
        if key is None:
            try:
                return await self._resolve(req), False
            finally:
                pending.release()
        flight = _Flight(asyncio.get_running_loop().create_future())
        self._inflight[key] = flight
        try:
            outcome = await self._resolve(req)
        except BaseException:
            flight.future.set_result(Failure("upstream query abandoned", bare=False))
            raise
        finally:
            del self._inflight[key]
            pending.release()
        flight.future.set_result(outcome)
        return outcome, flight.joined > 0

    def _order(self, usable: list[Proxy]) -> list[Proxy]:
        policy = self.config.policy
        if policy is Policy.SEQUENTIAL or len(usable) == 1:
            return usable
        if policy is Policy.ROUND_ROBIN:
            self._robin += 1
            i = self._robin % len(usable)
            return [usable[i], *usable[:i], *usable[i + 1 :]]
        return random.sample(usable, len(usable))

    def _proto(self, req: Request) -> str:
        if self.config.force_tcp:
            return "tcp"
        if self.config.prefer_udp:
            return "udp"
        return req.proto

    async def _resolve(self, req: Request) -> Outcome:
        """Try upstreams in policy order until one answers (spec §7.2 steps 3-9)."""
        cfg = self.config
        usable = [p for p in self.proxies if p.quarantine_reason is None]
        if not usable:
            reasons = "; ".join(f"{p.label}: {p.quarantine_reason}" for p in self.proxies)
            return Failure(f"no upstream left in service ({reasons})", bare=False)
        try:
            query = UpstreamQuery.from_request(req)
        except InvalidRequest as exc:
            return Failure(str(exc), rcode=rc.FORMERR)
        order = self._order(usable)
        proto = self._proto(req)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUDGET_S
        cap = cfg.connect_attempts
        attempts = skipped = failovers = i = 0
        last_error: str | None = None
        last_reply: DNSRecord | None = None
        while loop.time() < deadline and (cap == 0 or attempts < cap):
            if i >= len(order):
                i = skipped = 0
            proxy = order[i]
            i += 1
            if proxy.down:
                skipped += 1
                if skipped < len(order):
                    continue
                self.metrics.healthcheck_broken.inc()
                if cfg.failfast_all_unhealthy_upstreams:
                    break
                proxy = random.choice(order)
            try:
                reply = await self._attempt(proxy, query, proto, req.name, deadline)
            except ExchangeError as exc:
                last_error = str(exc)
                proxy.failed()
                attempts += 1
                if skipped >= len(order):
                    break
                continue
            last_error = None
            code = full_rcode(reply)
            if code in cfg.failover_rcodes:
                last_reply = reply
                failovers += 1
                if failovers < len(order):
                    continue
            if isinstance(self.next, Forward) and (
                code in cfg.next_rcodes
                or (cfg.next_on_nodata and code == rc.NOERROR and not reply.rr)
            ):
                return PassOn()
            return Relay(reply)
        if last_error is not None:
            return Failure(last_error)
        if last_reply is not None:
            return Relay(last_reply)
        return Failure("no healthy proxies")

    async def _attempt(
        self, proxy: Proxy, query: UpstreamQuery, proto: str, name: str, deadline: float
    ) -> DNSRecord:
        """One upstream attempt (plus its TCP retry after TC with `prefer_udp`)."""
        loop = asyncio.get_running_loop()
        attempts = self._attempts.setdefault(name, {})
        attempts[proxy.label] = attempts.get(proxy.label, 0) + 1
        try:
            timeout_s = min(self.config.read_timeout_s, max(0.0, deadline - loop.time()))
            reply = await proxy.exchange(query, proto, timeout_s)
            if reply.header.tc and proto == "udp" and self.config.prefer_udp:
                timeout_s = min(self.config.read_timeout_s, max(0.0, deadline - loop.time()))
                reply = await proxy.exchange(query, "tcp", timeout_s)
            return reply
        finally:
            left = attempts[proxy.label] - 1
            if left:
                attempts[proxy.label] = left
            else:
                del attempts[proxy.label]
                if not attempts:
                    del self._attempts[name]

    # -- UpstreamRegistry ------------------------------------------------------------------------
    def upstreams_for(self, qname: str) -> list[str]:
        """Upstreams a query for lower-case `qname` is in flight to, else those it would go to."""
        if not self.match(qname):
            return []
        busy = self._attempts.get(qname)
        if busy:
            return list(busy)
        return [p.label for p in self.proxies if p.quarantine_reason is None]

    def quarantine(self, upstream: str, reason: str) -> None:
        """Stop sending to `upstream` (`host:port`); queries that only it could serve SERVFAIL."""
        for proxy in self.proxies:
            if proxy.label == upstream:
                proxy.quarantine(reason)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start-up hook: begin sweeping expired idle connections."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name=f"forward {self.config.from_zone} idle connections"
            )

    async def stop(self) -> None:
        """Shutdown hook: stop probes and the sweeper, close idle connections."""
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for proxy in self.proxies:
            await proxy.stop()

    async def _sweep(self) -> None:
        interval_s = min(SWEEP_MAX_S, max(1.0, self.config.expire_s))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            now_s = loop.time()
            for proxy in self.proxies:
                proxy.sweep(now_s)
