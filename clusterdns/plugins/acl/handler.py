"""The `acl` handler: first matching policy of the first rule that decides; its replies and metrics.

Loop-thread only. The decision depends on the packet's source address, so blocks with `acl` never
store fast-path replies (the plugin is not replay-safe).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import ClassVar, Final

from dnslib import RR, DNSRecord, EDNSOption

from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import match_zone
from clusterdns.metrics import NAMESPACE, Counter, Metrics
from clusterdns.plugins.acl.config import AclConfig, Action

NAME: Final = "acl"

log = logging.getLogger(f"clusterdns.plugins.{NAME}")

EDE_OPTION: Final = 15
"""EDNS0 option code of Extended DNS Errors (RFC 8914)."""
EDE_BLOCKED: Final = 15
EDE_FILTERED: Final = 17
OPT_UDP_SIZE: Final = 4096
"""UDP size of the OPT record a block/filter reply carries (mirrored when the query had EDNS)."""
OPT_DO: Final = 0x8000

_SZV: Final = ("server", "zone", "view")


@dataclass(frozen=True, slots=True)
class AclMetrics:
    """The four acl counters (spec §11.3)."""

    blocked: Counter
    filtered: Counter
    allowed: Counter
    dropped: Counter


def _make_metrics(metrics: Metrics) -> AclMetrics:
    found = AclMetrics(
        blocked=Counter(
            f"{NAMESPACE}_acl_blocked_requests_total",
            "Counter of DNS requests being blocked.",
            _SZV,
        ),
        filtered=Counter(
            f"{NAMESPACE}_acl_filtered_requests_total",
            "Counter of DNS requests being filtered.",
            _SZV,
        ),
        allowed=Counter(
            f"{NAMESPACE}_acl_allowed_requests_total",
            "Counter of DNS requests being allowed.",
            ("server", "view"),
        ),
        dropped=Counter(
            f"{NAMESPACE}_acl_dropped_requests_total",
            "Counter of DNS requests being dropped.",
            _SZV,
        ),
    )
    metrics.register(found.blocked, found.filtered, found.allowed, found.dropped)
    return found


def metrics_for(metrics: Metrics) -> AclMetrics:
    """The acl series of a registry, registered on first use."""
    return metrics.shared(NAME, _make_metrics)


def client_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The source address as an IP (scope dropped, IPv4-mapped IPv6 as IPv4), None if invalid."""
    host = host.partition("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ede_reply(req: Request, rcode: int, info_code: int) -> DNSRecord:
    """The block/filter reply: question copied, `rcode`, an OPT with DO and the EDE option."""
    reply = req.reply(aa=False, rcode=rcode)
    ede = EDNSOption(EDE_OPTION, info_code.to_bytes(2, "big"))
    reply.add_ar(RR(".", rc.OPT, rclass=OPT_UDP_SIZE, ttl=OPT_DO, rdata=[ede]))
    return reply


class Acl:
    """Allow, block, filter or drop queries by zone, query type and source network."""

    name: ClassVar[str] = NAME

    def __init__(self, config: AclConfig, metrics: AclMetrics, nxt: Handler | None) -> None:
        self.rules = config.rules
        self.metrics = metrics
        self.next = nxt

    def decide(self, req: Request, remote: str) -> tuple[Action | None, str]:
        """The action of the first matching policy (None: allowed) and the zone of its rule."""
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        parsed = False
        name = req.name
        for rule in self.rules:
            zone = match_zone(name, rule.zones)
            if zone is None:
                continue
            if not parsed:
                ip, parsed = client_ip(remote), True
            if ip is None:
                log.error("Blocking request. Unable to parse source address: %s", remote)
                return Action.BLOCK, zone
            qtype = req.qtype
            for policy in rule.policies:
                if policy.matches(qtype, ip):
                    if policy.action is Action.ALLOW:
                        return None, zone
                    return policy.action, zone
        return None, ""

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Apply the rules; write the block/filter reply, drop, or pass the query on."""
        action, zone = self.decide(req, w.remote[0])
        m = self.metrics
        if action is None:
            m.allowed.inc((req.server, ""))
            return await next_or_failure(NAME, self.next, req, w)
        key = (req.server, zone, "")
        if action is Action.DROP:
            m.dropped.inc(key)
            return rc.NOERROR
        if action is Action.BLOCK:
            w.write(ede_reply(req, rc.REFUSED, EDE_BLOCKED), NAME)
            m.blocked.inc(key)
        else:
            w.write(ede_reply(req, rc.NOERROR, EDE_FILTERED), NAME)
            m.filtered.inc(key)
        return rc.NOERROR
