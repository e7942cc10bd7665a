"""The `kubernetes` chain handler: one authoritative reply per query for the plugin's zones.

It reads only the in-memory Store (through records.ClusterView) and never talks to the API
server; ExternalName targets outside the zone are chased by running a fresh query from the top
of the block's own chain. Names outside the zones, fallthrough name errors and non-IN questions
go to the next plugin. Zone transfers are refused without writing. Loop-thread only.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from socket import AF_INET, AF_INET6
from typing import ClassVar, Final

import psutil
from dnslib import EDNS0, RR, DNSHeader, DNSQuestion, DNSRecord

from clusterdns.chain.fastpath import Generations, Offer
from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.setup import BlockSettings
from clusterdns.chain.writer import CaptureWriter, ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import is_subdomain, match_zone
from clusterdns.errors import ClusterDNSError
from clusterdns.k8s.store import Store
from clusterdns.plugins.kubernetes import names
from clusterdns.plugins.kubernetes.config import KubernetesConfig
from clusterdns.plugins.kubernetes.names import NameKind, RecordRequest
from clusterdns.plugins.kubernetes.records import (
    ClusterView,
    ExternalTarget,
    Owner,
    RegisteringSRV,
    Triple,
    address_rr,
    cname_rr,
    dns_version_rr,
    family,
    label_of,
    ns_rr,
    ptr_rr,
    soa_rr,
    srv_records,
    zone_in_case,
)

NAME: Final = "kubernetes"
MAX_CNAMES: Final = 10
"""Longest CNAME chain the plugin builds, counting in-zone and chased targets."""

Link = tuple[str, str]
"""One CNAME of a chain as (owner, target), lower case."""

_enclosing: contextvars.ContextVar[tuple[Link, ...]] = contextvars.ContextVar(
    "kubernetes_cname_chain", default=()
)
"""The CNAMEs whose chase through the chain encloses the current query (the loop guard across
chases: a target in another zone of the block may point back at this one)."""

LocalAddresses = Callable[[], list[str]]
"""Returns the server's own non-loopback addresses (apex NS glue and `ns.dns.<zone>`)."""


def listening_addresses(block: BlockSettings) -> LocalAddresses:
    """Return the default own-address hook for a block.

    It gives the block's non-loopback listen addresses, or with a wildcard listener every
    non-loopback interface address (IPv6 link-local included), read on each call.
    """

    def addresses() -> list[str]:
        found = list(block.listen)
        if not found or any(_unspecified(text) for text in found):
            for addrs in psutil.net_if_addrs().values():
                found.extend(a.address for a in addrs if a.family in (AF_INET, AF_INET6))
        out: list[str] = []
        for text in found:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue
            if not ip.is_loopback and not ip.is_unspecified:
                out.append(ip.compressed)
        return list(dict.fromkeys(out))

    return addresses


def _unspecified(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False


@dataclass
class _Lookup:
    """The outcome of resolving one question, before the reply is built."""

    exists: bool
    answer: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)


@dataclass
class _State:
    """Per-query facts the reply depends on besides the question and the store."""

    replayable: bool = True
    """False once the answer used the host's addresses or a chased upstream reply."""
    truncated: bool = False
    """A chased reply had TC set."""


class Kubernetes:
    """Serve the Kubernetes DNS schema from a Store."""

    name: ClassVar[str] = NAME

    def __init__(
        self,
        config: KubernetesConfig,
        store: Store,
        nxt: Handler | None,
        block: BlockSettings | None,
        local_addresses: LocalAddresses,
        generations: Generations | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.next = nxt
        self.block = block
        self.local_addresses = local_addresses
        self.view = ClusterView(config, store)
        self.generations = generations
        self.slots: dict[str, int] = {}
        if generations is not None:
            for zone in config.zones:
                slot = generations.slot(f"{NAME}:{zone}")
                generations.bump(slot)  # drop replies a previous instance offered for this zone
                self.slots[zone] = slot
            store.listeners.append(self.on_store_change)

    def on_store_change(self) -> None:
        """Invalidate every fast-path reply of the plugin's zones (a Store listener)."""
        if self.generations is not None:
            for slot in self.slots.values():
                self.generations.bump(slot)

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Answer a question in the plugin's zones, or pass it on."""
        name = req.name
        zone = match_zone(name, self.config.zones)
        if zone is None or req.qclass != rc.IN:
            return await next_or_failure(NAME, self.next, req, w)
        qtype = req.qtype
        if qtype in (rc.AXFR, rc.IXFR):
            return rc.REFUSED
        slot = self.slots.get(zone)
        generation = 0
        if self.generations is not None and slot is not None:
            generation = self.generations.generation(slot)
        state = _State()
        zone_text = zone_in_case(req.qname, name, zone)
        found = await self._lookup(req, name, zone, zone_text, state)
        code = rc.NOERROR
        if not found.exists:
            if self.config.fallthrough.through(name):
                return await next_or_failure(NAME, self.next, req, w)
            code = rc.NXDOMAIN if self.store.synced else rc.SERVFAIL
        reply = req.reply(aa=True, rcode=code)
        if state.truncated:
            reply.header.tc = 1
        for rr in found.answer:
            reply.add_answer(rr)
        for rr in found.extra:
            reply.add_ar(rr)
        if code != rc.NOERROR or not found.answer:
            reply.add_auth(soa_rr(zone_text, self.config.ttl_s, self.store.serial))
        w.write(reply, NAME)
        if slot is not None and state.replayable:
            w.offer_fastpath(Offer(slot, generation))
        return code

    # -- deciding the answer -----------------------------------------------------------------------
    async def _lookup(
        self, req: Request, name: str, zone: str, zone_text: str, state: _State
    ) -> _Lookup:
        qtype = req.qtype
        ttl = self.config.ttl_s
        if qtype == rc.SOA:
            # Only the apex has an SOA; every other name is NODATA, existing or not (quirk Q2).
            if name == zone:
                return _Lookup(True, [soa_rr(zone_text, ttl, self.store.serial)])
            return _Lookup(True)
        if qtype == rc.PTR:
            address = names.reverse_address(name)
            if address is not None:
                targets = self.view.reverse_targets(address)
                return _Lookup(bool(targets), [ptr_rr(req.owner, t, ttl) for t in targets])
        parsed = names.parse(name, zone)
        kind = parsed.kind
        if kind is NameKind.DNS_VERSION:
            if qtype == rc.TXT:
                return _Lookup(True, [dns_version_rr(req.owner)])
            return _Lookup(False)  # quirk Q3
        if kind is NameKind.APEX and qtype == rc.NS:
            state.replayable = False
            pairs = self.view.nameservers(zone_text, self.local_addresses())
            answer = [ns_rr(req.owner, t, ttl) for t in dict.fromkeys(t for t, _ in pairs)]
            return _Lookup(True, answer, [address_rr(t, ip, ttl) for t, ip in pairs])
        if qtype == rc.TXT:
            # Exists only when the name selects something (quirk Q1); no TXT is synthesised.
            return _Lookup(self._selects(parsed))
        if qtype == rc.PTR:
            # A forward name: NODATA if it exists; `ns.dns` is not in the grammar here.
            return _Lookup(kind is not NameKind.NS_DNS and self._exists(parsed))
        if qtype in (rc.A, rc.AAAA):
            chain = _enclosing.get()
            return await self._addresses(req, req.owner, name, zone, zone_text, chain, state)
        if kind is NameKind.SERVICE:
            items = self.view.service_items(parsed)
            if qtype == rc.SRV:
                answer, extra = srv_records(req.owner, items, zone_text, ttl)
                return _Lookup(bool(items), answer, extra)
            if qtype == rc.CNAME and items and isinstance(items[0], ExternalTarget):
                return _Lookup(True, [cname_rr(req.owner, items[0].target, ttl)])
            return _Lookup(bool(items))
        if kind is NameKind.POD and qtype == rc.SRV:
            return self._pod_srv(req, parsed, zone)
        return _Lookup(self._exists(parsed))

    def _pod_srv(self, req: Request, parsed: RecordRequest, zone: str) -> _Lookup:
        """SRV for a pod name, as CoreDNS answers it.

        Port 0, weight 100, the pod's own name (lower case, extra labels dropped) as the target
        and its address as glue.
        """
        found = self.view.pod_address(parsed)
        if found is None:
            return _Lookup(False)
        ip, _ = found
        ttl = self.config.ttl_s
        target = f"{parsed.service}.{parsed.namespace}.pod.{zone}"
        srv = RR(req.owner, rc.SRV, rdata=RegisteringSRV(0, 100, 0, label_of(target)), ttl=ttl)
        return _Lookup(True, [srv], [address_rr(target, ip, ttl)])

    def _exists(self, parsed: RecordRequest) -> bool:
        """Whether a name exists for types that synthesise nothing here (NODATA vs NXDOMAIN)."""
        match parsed.kind:
            case NameKind.APEX | NameKind.SVC_TYPE | NameKind.POD_TYPE | NameKind.NS_DNS:
                return True
            case NameKind.SVC_NAMESPACE:
                return self.view.exposed(parsed.namespace)
            case NameKind.POD_NAMESPACE:
                return self.view.pod_namespace_exists(parsed.namespace)
            case NameKind.SERVICE:
                return bool(self.view.service_items(parsed))
            case NameKind.POD:
                return self.view.pod_address(parsed) is not None
            case _:
                return False

    def _selects(self, parsed: RecordRequest) -> bool:
        """Whether a name selects at least one item (the TXT existence rule, quirk Q1)."""
        if parsed.kind is NameKind.SERVICE:
            return bool(self.view.service_items(parsed))
        if parsed.kind is NameKind.POD:
            return self.view.pod_address(parsed) is not None
        return False

    async def _addresses(
        self,
        req: Request,
        owner: Owner,
        name: str,
        zone: str,
        zone_text: str,
        chain: tuple[Link, ...],
        state: _State,
    ) -> _Lookup:
        """A/AAAA for `name` (lower case; records owned by `owner`), following ExternalNames.

        `owner` is the question's own labels (`Request.owner`) for the question name, else the
        text of an in-zone CNAME target.
        """
        qtype = req.qtype
        want = 6 if qtype == rc.AAAA else 4
        ttl = self.config.ttl_s
        parsed = names.parse(name, zone)
        kind = parsed.kind
        if kind is NameKind.NS_DNS:
            state.replayable = False
            pairs = self.view.nameservers(zone_text, self.local_addresses())
            ips = dict.fromkeys(ip for _, ip in pairs if family(ip) == want)
            return _Lookup(True, [address_rr(owner, ip, ttl) for ip in ips])
        if kind is NameKind.POD:
            found = self.view.pod_address(parsed)
            if found is None:
                return _Lookup(False)
            ip, fam = found
            return _Lookup(True, [address_rr(owner, ip, ttl)] if fam == want else [])
        if kind is not NameKind.SERVICE:
            return _Lookup(self._exists(parsed))
        items = self.view.service_items(parsed)
        records: list[RR] = []
        seen: set[str] = set()
        for item in items:
            if isinstance(item, Triple):
                if family(item.address) == want and item.address not in seen:
                    seen.add(item.address)
                    records.append(address_rr(owner, item.address, ttl))
                continue
            records.extend(await self._follow(req, owner, name, item.target, zone, chain, state))
        return _Lookup(bool(items), records)

    async def _follow(
        self,
        req: Request,
        owner: Owner,
        name: str,
        target: str,
        zone: str,
        chain: tuple[Link, ...],
        state: _State,
    ) -> list[RR]:
        """The CNAME `owner -> target` and the target's A/AAAA records, or nothing.

        Loop guards: no CNAME to the name itself, none already in the chain, at most
        MAX_CNAMES in a chain (in-zone targets and chases through the chain together).
        """
        lower = target.lower()
        link = (name, lower)
        if lower == name or link in chain or len(chain) >= MAX_CNAMES:
            return []
        cname = cname_rr(owner, target, self.config.ttl_s)
        if is_subdomain(lower, zone):
            target_text = zone_in_case(target, lower, zone)
            found = await self._addresses(
                req, target, lower, zone, target_text, (*chain, link), state
            )
            return [cname, *found.answer] if found.answer else []
        state.replayable = False
        reply = await self._chase(req, target, (*chain, link))
        if reply is None:
            return []
        if reply.header.tc:
            state.truncated = True
        return [cname, *reply.rr]

    async def _chase(self, req: Request, target: str, chain: tuple[Link, ...]) -> DNSRecord | None:
        """Run (target, qtype) from the top of the block's chain; its reply, or None without one.

        `chain` (ending with the CNAME to `target`) is visible to this plugin while the
        sub-query runs, so a target that leads back here stops at the first repeated CNAME.
        """
        head = self.block.head if self.block is not None else None
        if head is None:
            return None
        header = DNSHeader(id=req.id, rd=1)
        query = DNSRecord(header, q=DNSQuestion(label_of(target), req.qtype))
        query.add_ar(EDNS0(udp_len=req.max_size, flags="do" if req.do else ""))
        wire = bytes(query.pack())
        sub = Request(
            DNSRecord.parse(wire),
            wire,
            proto=req.proto,
            remote=req.remote,
            local=req.local,
            server=req.server,
        )
        zones = self.block.zones if self.block is not None else ()
        sub.zone = match_zone(sub.name, zones) or "."
        capture = CaptureWriter(req.proto, req.remote, req.local)
        token = _enclosing.set(chain)
        try:
            await head.serve(sub, capture)
        except ClusterDNSError:
            pass  # an error returned up the chain: the target simply has no records
        finally:
            _enclosing.reset(token)
        return capture.msg if capture.msg is not None else DNSRecord(DNSHeader(qr=1))
