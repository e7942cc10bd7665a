"""The `rrl` handler: charge each UDP response to its category's account; drop, slip or send.

Categories as coredns/rrl (and BIND): the client's netblock, the response type (answer, NODATA,
NXDOMAIN, referral, error) and, depending on the type, the query name or the zone of the
authority record and the query type. A limited response is dropped, or every `slip-ratio`-th one
is sent with every section emptied and TC set, so that a real client retries over TCP, which is
never response-limited. Loop-thread only; not replay-safe (the outcome depends on the client and
on time).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar, Final

from dnslib import DNSRecord

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter, WriterWrapper, copy_header, full_rcode
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import match_zone
from clusterdns.metrics import NAMESPACE, Counter, Metrics
from clusterdns.plugins.rrl.config import RrlConfig
from clusterdns.plugins.rrl.table import Table

NAME: Final = "rrl"

log = logging.getLogger(f"clusterdns.plugins.{NAME}")

RESPONSE: Final = 0
NODATA: Final = 1
NXDOMAIN: Final = 2
REFERRAL: Final = 3
ERROR: Final = 4
REQUEST: Final = 5
"""Response categories (coredns/rrl's numbering), and the request-limit accounts."""

_SZV: Final = ("server", "zone", "view")


@dataclass(frozen=True, slots=True)
class RrlMetrics:
    """The rrl counters. coredns/rrl labels them by client address; we do not (bounded series)."""

    responses_exceeded: Counter
    requests_exceeded: Counter


def _make_metrics(metrics: Metrics) -> RrlMetrics:
    found = RrlMetrics(
        responses_exceeded=Counter(
            f"{NAMESPACE}_rrl_responses_exceeded_total",
            "Counter of responses exceeding QPS limit.",
            _SZV,
        ),
        requests_exceeded=Counter(
            f"{NAMESPACE}_rrl_requests_exceeded_total",
            "Counter of requests exceeding QPS limit.",
            _SZV,
        ),
    )
    metrics.register(found.responses_exceeded, found.requests_exceeded)
    return found


def metrics_for(metrics: Metrics) -> RrlMetrics:
    """The rrl series of a registry, registered on first use."""
    return metrics.shared(NAME, _make_metrics)


def response_type(msg: DNSRecord) -> int:
    """The rate-limit category of a reply (coredns/rrl `responseType`)."""
    if msg.rr:
        return RESPONSE
    code = full_rcode(msg)
    if code == rc.NXDOMAIN:
        return NXDOMAIN
    if code == rc.NOERROR:
        if msg.auth and int(msg.auth[0].rtype) == rc.NS:
            return REFERRAL
        return NODATA
    return ERROR


def slipped(msg: DNSRecord) -> DNSRecord:
    """The reply with every section but the question emptied and TC set."""
    header = copy_header(msg.header)
    header.tc = 1
    return DNSRecord(header, questions=list(msg.questions))


class Rrl:
    """Response (and optionally request) rate limiting per client netblock."""

    name: ClassVar[str] = NAME

    def __init__(
        self, config: RrlConfig, metrics: RrlMetrics, table: Table, nxt: Handler | None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.table = table
        self.next = nxt
        self.allowance = {
            RESPONSE: config.responses_ns,
            NODATA: config.nodata_ns,
            NXDOMAIN: config.nxdomains_ns,
            REFERRAL: config.referrals_ns,
            ERROR: config.errors_ns,
        }

    def netblock(self, host: str) -> tuple[int, int] | None:
        """(IP version, masked address) of a client, or None when exempt or not an address."""
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.config.exempt if net.version == ip.version):
            return None
        if ip.version == 4:
            bits, width = self.config.ipv4_prefix, 32
        else:
            bits, width = self.config.ipv6_prefix, 128
        mask = ((1 << bits) - 1) << (width - bits)
        return ip.version, int(ip) & mask

    def token(self, block: tuple[int, int], req: Request, msg: DNSRecord, rtype: int) -> Hashable:
        """The account a reply is charged to (coredns/rrl `buildToken`; names lower-cased)."""
        if rtype == RESPONSE:
            return (block, rtype, req.qtype, req.name)
        if rtype == NODATA:
            return (block, rtype, 0, req.name)
        if rtype in (NXDOMAIN, REFERRAL):
            owner = str(msg.auth[0].rname).lower() if msg.auth else ""
            return (block, rtype, req.qtype if rtype == REFERRAL else 0, owner)
        return (block, rtype, 0, "")

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Limit requests, then the reply of a UDP query, for clients in the plugin's zones."""
        zone = match_zone(req.name, self.config.zones)
        if zone is None:
            return await next_or_failure(NAME, self.next, req, w)
        block = self.netblock(w.remote[0])
        if block is None:
            return await next_or_failure(NAME, self.next, req, w)
        config = self.config
        if config.requests_ns:
            debit = self.table.debit((block, REQUEST, 0, ""), config.requests_ns)
            if debit.limited:
                self.metrics.requests_exceeded.inc((req.server, zone, ""))
                if not config.report_only:
                    return rc.NOERROR  # dropped: nothing written, and no error for the server
        if req.proto == "tcp" or not config.limits_responses:
            return await next_or_failure(NAME, self.next, req, w)
        limiting = LimitingWriter(w, self, req, zone, block)
        code = await next_or_failure(NAME, self.next, req, limiting)
        if limiting.dropped:
            return rc.NOERROR
        return code

    def judge(self, req: Request, zone: str, block: tuple[int, int], msg: DNSRecord) -> str:
        """`send`, `slip` or `drop` for a reply about to be written."""
        rtype = response_type(msg)
        allowance = self.allowance[rtype]
        if allowance == 0:
            return "send"
        debit = self.table.debit(self.token(block, req, msg, rtype), allowance)
        if not debit.limited:
            return "send"
        self.metrics.responses_exceeded.inc((req.server, zone, ""))
        if self.config.report_only:
            return "send"
        return "slip" if debit.slip else "drop"


class LimitingWriter(WriterWrapper):
    """Charges the reply to its account on its way out; drops or slips it when over the limit."""

    def __init__(
        self, inner: ResponseWriter, rrl: Rrl, req: Request, zone: str, block: tuple[int, int]
    ) -> None:
        super().__init__(inner)
        self.rrl = rrl
        self.req = req
        self.zone = zone
        self.block = block
        self.dropped = False

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Send, slip or drop the reply (only the first write of a query counts)."""
        if self.dropped or self.inner.written:
            return
        verdict = self.rrl.judge(self.req, self.zone, self.block, msg)
        if verdict == "drop":
            self.dropped = True
            return
        self.inner.write(slipped(msg) if verdict == "slip" else msg, plugin)

    def offer_fastpath(self, offer: Offer) -> None:
        """Never: a rate-limited reply depends on the client and on time."""
