"""Proxy: one upstream of one forward line — its exchanges, idle connections and health.

After a failed exchange the upstream is probed (`<domain> IN NS`) every `health_check` interval
until any reply comes back; each failed probe counts one failure, and an upstream with more than
`max_fails` failures is down (spec §7.2). A quarantined upstream (taken out of service through
the block's UpstreamRegistry, e.g. by `loop`) is never used or probed again. Everything here runs
on the event loop thread; the probe task is started on demand and stopped at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dnslib import DNSRecord

from clusterdns.chain.writer import full_rcode
from clusterdns.dnsutil.rcode import RCODE_NAMES
from clusterdns.plugins.forward.config import Transport, UpstreamAddr
from clusterdns.plugins.forward.metrics import PROXY_NAME, ForwardMetrics
from clusterdns.plugins.forward.transport import (
    CachedConnClosed,
    ConnPool,
    ExchangeError,
    UpstreamQuery,
    new_id,
    open_stream,
    stream_exchange,
    udp_exchange,
)

log = logging.getLogger("clusterdns.plugins.forward")

PROBE_TIMEOUT_S: Final = 1.0
"""Longest wait for a probe reply (CoreDNS: 1 s); never longer than `read_timeout`."""
MIN_PROBE_INTERVAL_S: Final = 0.05
"""Floor of the pause between probes, so `health_check 0` cannot spin."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    """What every upstream of one forward line shares."""

    read_timeout_s: float
    expire_s: float
    max_age_s: float
    max_idle_conns: int
    max_fails: int
    health_check_s: float
    probe: UpstreamQuery
    force_tcp: bool
    source_address: str
    tls_servername: str


def rcode_label(code: int) -> str:
    """The `rcode` label of the request-duration histogram: mnemonic, or the number if unknown."""
    return RCODE_NAMES.get(code, str(code))


class Proxy:
    """One upstream: exchanges with it, its connection pool and its health. Loop-thread only."""

    def __init__(
        self,
        addr: UpstreamAddr,
        settings: ProxySettings,
        metrics: ForwardMetrics,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.addr = addr
        self.label = addr.addr
        """`host:port`: the `to` label and the name the registry uses."""
        self.settings = settings
        self.metrics = metrics
        self.ssl_context = ssl_context
        self.fails = 0
        """Consecutive failed health probes."""
        self.quarantine_reason: str | None = None
        self.pool = ConnPool(
            expire_s=settings.expire_s,
            max_age_s=settings.max_age_s,
            max_idle=settings.max_idle_conns,
        )
        self._probe_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._changed: asyncio.Event | None = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def down(self) -> bool:
        """Whether more than `max_fails` consecutive probes failed (never with max_fails 0)."""
        max_fails = self.settings.max_fails
        return max_fails > 0 and self.fails > max_fails

    @property
    def probing(self) -> bool:
        """Whether health probes are running."""
        return self._probe_task is not None

    async def wait_until(self, predicate: Callable[[Proxy], bool], timeout_s: float) -> None:
        """Wait until `predicate(self)` holds after a health or service change.

        Raises:
            TimeoutError: it did not hold within `timeout_s`.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def quarantine(self, reason: str) -> None:
        """Take this upstream out of service for good."""
        if self.quarantine_reason is not None:
            return
        self.quarantine_reason = reason
        log.info("not sending to upstream %s any more: %s", self.label, reason)
        if self._probe_task is not None:
            self._probe_task.cancel()
        self.pool.close_all()
        self._notify()

    # -- exchanges -------------------------------------------------------------------------------
    def transport_for(self, proto: str) -> str:
        """The protocol actually used: `tcp-tls` for DoT upstreams, else `proto`."""
        return "tcp-tls" if self.addr.transport is Transport.TLS else proto

    def _discard(self, reason: str) -> None:
        self.metrics.discarded_replies.inc((self.label, reason))

    async def exchange(self, query: UpstreamQuery, proto: str, timeout_s: float) -> DNSRecord:
        """Send `query` with a fresh ID over `proto` ("udp" or "tcp") and return the reply.

        Raises:
            ExchangeError: the attempt failed (the caller starts health checking).
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        proto = self.transport_for(proto)
        qid = new_id()
        wire = query.with_id(qid)
        key = (PROXY_NAME, self.label, proto)
        if proto == "udp":
            self.metrics.conn_cache_misses.inc(key)
            reply = await udp_exchange(
                self.addr,
                wire,
                qid,
                query.question,
                source=self.settings.source_address,
                timeout_s=timeout_s,
                discard=self._discard,
            )
        else:
            deadline = start + timeout_s
            while True:
                conn = self.pool.take(proto, loop.time())
                cached = conn is not None
                if conn is None:
                    self.metrics.conn_cache_misses.inc(key)
                    conn = await open_stream(
                        self.addr,
                        proto,
                        source=self.settings.source_address,
                        ssl_context=self.ssl_context,
                        server_name=self.settings.tls_servername or self.addr.server_name,
                        timeout_s=max(0.0, deadline - loop.time()),
                    )
                else:
                    self.metrics.conn_cache_hits.inc(key)
                try:
                    reply = await stream_exchange(
                        conn,
                        wire,
                        qid,
                        query.question,
                        timeout_s=max(0.0, deadline - loop.time()),
                        discard=self._discard,
                        cached=cached,
                    )
                except CachedConnClosed:
                    conn.close()
                    continue
                except BaseException:
                    conn.close()
                    raise
                self.pool.give(conn, loop.time())
                break
        code = full_rcode(reply)
        self.metrics.request_duration.observe(
            (PROXY_NAME, self.label, rcode_label(code)), loop.time() - start
        )
        return reply

    # -- health ----------------------------------------------------------------------------------
    def failed(self) -> None:
        """An exchange failed: start probing, unless checks are off or already running."""
        if (
            self.settings.max_fails == 0
            or self._probe_task is not None
            or self._stopped
            or self.quarantine_reason is not None
        ):
            return
        self._probe_task = asyncio.get_running_loop().create_task(
            self._probe_loop(), name=f"forward health check {self.label}"
        )
        self._notify()

    async def probe_once(self) -> bool:
        """Send one health probe; any reply, whatever its rcode, means healthy."""
        timeout_s = min(PROBE_TIMEOUT_S, self.settings.read_timeout_s)
        query = self.settings.probe
        qid = new_id()
        proto = self.transport_for("tcp" if self.settings.force_tcp else "udp")
        try:
            if proto == "udp":
                await udp_exchange(
                    self.addr,
                    query.with_id(qid),
                    qid,
                    query.question,
                    source=self.settings.source_address,
                    timeout_s=timeout_s,
                    discard=self._discard,
                )
                return True
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            conn = await open_stream(
                self.addr,
                proto,
                source=self.settings.source_address,
                ssl_context=self.ssl_context,
                server_name=self.settings.tls_servername or self.addr.server_name,
                timeout_s=timeout_s,
            )
            try:
                await stream_exchange(
                    conn,
                    query.with_id(qid),
                    qid,
                    query.question,
                    timeout_s=max(0.0, deadline - loop.time()),
                    discard=self._discard,
                    cached=False,
                )
            finally:
                conn.close()
        except ExchangeError as exc:
            log.debug("health check of %s failed: %s", self.label, exc)
            return False
        return True

    async def _probe_loop(self) -> None:
        try:
            while self.quarantine_reason is None and not self._stopped:
                if await self.probe_once():
                    if self.down:
                        log.info("upstream %s is healthy again", self.label)
                    self.fails = 0
                    return
                self.fails += 1
                self.metrics.healthcheck_failures.inc((PROXY_NAME, self.label))
                if self.fails == self.settings.max_fails + 1:
                    log.warning(
                        "upstream %s is down after %d failed health checks", self.label, self.fails
                    )
                self._notify()
                await asyncio.sleep(max(MIN_PROBE_INTERVAL_S, self.settings.health_check_s))
        finally:
            self._probe_task = None
            self._notify()

    # -- lifecycle -------------------------------------------------------------------------------
    def sweep(self, now_s: float) -> None:
        """Close expired idle connections."""
        self.pool.sweep(now_s)

    async def stop(self) -> None:
        """Stop probing and close idle connections."""
        self._stopped = True
        task = self._probe_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.pool.close_all()
