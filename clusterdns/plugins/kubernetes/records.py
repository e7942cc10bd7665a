"""What the cluster state says about a name, and the resource records built from it (spec §6.3-6.8).

`ClusterView` reads the Store under the plugin's options (namespaces, pods mode, noendpoints,
endpoint_pod_names, ignore empty_service) and returns plain items; the record builders turn
them into dnslib records. Nothing here awaits, writes a reply or decides an rcode: the handler
does that. Loop-thread only, like the Store it reads.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeAlias

from dnslib import AAAA, CNAME, NS, PTR, RR, SOA, SRV, TXT, A
from dnslib.label import DNSLabel

from clusterdns.chain.request import text_labels
from clusterdns.dnsutil import rcode as rc
from clusterdns.k8s.objects import EndpointAddress, EndpointSlice, Port, Service
from clusterdns.k8s.store import Store
from clusterdns.plugins.kubernetes.config import KubernetesConfig, PodMode
from clusterdns.plugins.kubernetes.names import RecordRequest, dashed_address, pod_address

DNS_SCHEMA_VERSION: Final = "1.1.0"
DNS_VERSION_TTL_S: Final = 28800
MAX_SOA_TTL_S: Final = 300
SOA_REFRESH_S: Final = 7200
SOA_RETRY_S: Final = 1800
SOA_EXPIRE_S: Final = 86400
MAX_POD_NAME: Final = 63
"""Longest targetRef (pod) name usable as an endpoint name."""
MAX_POINTER_OFFSET: Final = 0x3FFF

Owner: TypeAlias = str | DNSLabel
"""A record's owner: the question's own labels (`Request.owner`), or a name as escaped text."""


def join(*parts: str) -> str:
    """Join labels and an absolute zone (the last part) into an absolute name."""
    *labels, zone = parts
    if zone == ".":
        return ".".join(labels) + "."
    return ".".join([*labels, zone])


def zone_in_case(qname: str, name: str, zone: str) -> str:
    """The zone part of the question in the question's letter case.

    `qname` is the question as sent, `name` its lower-case form and `zone` the lower-case zone.
    """
    if len(qname) == len(name) and qname.lower() == name:
        return qname[len(qname) - len(zone) :]
    return zone


def endpoint_name(addr: EndpointAddress, pod_names: bool) -> str:
    """The DNS name of an endpoint address: hostname, pod name (option), or dashed address."""
    if addr.hostname:
        return addr.hostname
    if pod_names and addr.target_name and len(addr.target_name) <= MAX_POD_NAME:
        return addr.target_name
    return dashed_address(addr.ip)


def family(ip: str) -> int:
    """4 or 6."""
    return 6 if ":" in ip else 4


@dataclass(frozen=True, slots=True)
class Triple:
    """One (address, port, owner) item a service name selects (spec §6.4)."""

    address: str
    port: Port
    namespace: str
    service: str
    endpoint: str | None
    """The endpoint name for endpoint items; None for a cluster IP."""

    def target(self, zone: str) -> str:
        """The SRV/NS target in `zone` (written in the query's letter case)."""
        if self.endpoint is None:
            return join(self.service, self.namespace, "svc", zone)
        return join(self.endpoint, self.service, self.namespace, "svc", zone)


@dataclass(frozen=True, slots=True)
class ExternalTarget:
    """An ExternalName service's target, absolute, as stored in the API."""

    target: str


Item = Triple | ExternalTarget


class ClusterView:
    """The Store as the plugin's options let DNS see it."""

    def __init__(self, config: KubernetesConfig, store: Store) -> None:
        self.config = config
        self.store = store

    # -- namespaces ------------------------------------------------------------------------------
    def listed(self, namespace: str) -> bool:
        """Whether `namespaces` (if set) lists the namespace."""
        return not self.config.namespaces or namespace in self.config.namespaces

    def exposed(self, namespace: str) -> bool:
        """Whether the namespace exists for DNS: watched (after namespace_labels) and listed."""
        return self.listed(namespace) and self.store.has_namespace(namespace)

    # -- services --------------------------------------------------------------------------------
    def slices(self, namespace: str, service: str) -> Iterable[EndpointSlice]:
        """The service's EndpointSlices; none with `noendpoints`."""
        if self.config.noendpoints:
            return ()
        return self.store.slices_of(namespace, service)

    def service_items(self, req: RecordRequest) -> list[Item]:
        """The items a service-level name selects; empty means the name does not exist."""
        if not self.exposed(req.namespace):
            return []
        svc = self.store.service(req.namespace, req.service)
        if svc is None:
            return []
        if svc.is_external_name:
            return self._external(svc, req)
        if (
            self.config.ignore_empty_service
            and not svc.headless
            and not any(sl.addresses for sl in self.slices(svc.namespace, svc.name))
        ):
            return []
        if svc.headless or req.endpoint:
            return self._endpoint_items(svc, req)
        return [
            Triple(ip, port, svc.namespace, svc.name, None)
            for port in svc.ports
            if _port_matches(port, req)
            for ip in svc.cluster_ips
        ]

    def _external(self, svc: Service, req: RecordRequest) -> list[Item]:
        if req.has_subname or not svc.external_name:
            return []
        try:
            ipaddress.ip_address(svc.external_name)
        except ValueError:
            target = svc.external_name
            return [ExternalTarget(target if target.endswith(".") else target + ".")]
        return []  # an IP literal is not a CNAME target (quirk Q8)

    def _endpoint_items(self, svc: Service, req: RecordRequest) -> list[Item]:
        items: list[Item] = []
        pod_names = self.config.endpoint_pod_names
        for sl in self.slices(svc.namespace, svc.name):
            ports = [p for p in sl.ports if _port_matches(p, req)]
            if not ports:
                continue
            for addr in sl.addresses:
                name = endpoint_name(addr, pod_names)
                if req.endpoint and name.lower() != req.endpoint:
                    continue
                items.extend(Triple(addr.ip, p, svc.namespace, svc.name, name) for p in ports)
        return items

    # -- pods ------------------------------------------------------------------------------------
    def pod_namespace_exists(self, namespace: str) -> bool:
        """Whether `<ns>.pod.<zone>` exists."""
        return self.config.pods is not PodMode.DISABLED and self.exposed(namespace)

    def pod_address(self, req: RecordRequest) -> tuple[str, int] | None:
        """The address `<label>.<ns>.pod.<zone>` answers, with its family; None: no such name."""
        mode = self.config.pods
        if mode is PodMode.DISABLED or not self.exposed(req.namespace):
            return None
        found = pod_address(req.service)
        if found is None:
            return None
        if mode is PodMode.VERIFIED and not self.store.pod_has_ip(req.namespace, found[0]):
            return None
        return found

    # -- reverse ---------------------------------------------------------------------------------
    def reverse_targets(self, ip: str) -> list[str]:
        """PTR targets for an address: a service's cluster IP first, else its endpoints."""
        primary = self.config.primary_zone
        for svc in self.store.services_by_ip(ip):
            if self.listed(svc.namespace):
                return [join(svc.name, svc.namespace, "svc", primary)]
        if self.config.noendpoints:
            return []
        out: list[str] = []
        for sl, addr in self.store.endpoints_by_ip(ip):
            if not self.listed(sl.namespace):
                continue
            name = endpoint_name(addr, self.config.endpoint_pod_names)
            target = join(name, sl.service, sl.namespace, "svc", primary)
            if target not in out:
                out.append(target)
        return out

    # -- the server's own records ----------------------------------------------------------------
    def nameservers(self, zone: str, local: Iterable[str]) -> list[tuple[str, str]]:
        """(NS target, glue address) pairs for the apex NS (spec §6.6), without duplicates.

        The services whose endpoints are the server's own addresses; else `ns.dns.<zone>` with
        the own addresses. `zone` is written in the query's letter case.
        """
        own = [_canonical(ip) for ip in local]
        own = [ip for ip in dict.fromkeys(own) if ip]
        pairs: list[tuple[str, str]] = []
        if not self.config.noendpoints:
            seen_slices: set[tuple[str, str]] = set()
            for ip in own:
                for sl, _ in self.store.endpoints_by_ip(ip):
                    if sl.key in seen_slices:
                        continue
                    seen_slices.add(sl.key)
                    svc = self.store.service(sl.namespace, sl.service)
                    if svc is None or svc.is_external_name:
                        continue
                    if svc.headless:
                        for addr in sl.addresses:
                            name = endpoint_name(addr, self.config.endpoint_pod_names)
                            target = join(name, svc.name, svc.namespace, "svc", zone)
                            pairs.append((target, addr.ip))
                    else:
                        target = join(svc.name, svc.namespace, "svc", zone)
                        pairs.extend((target, cip) for cip in svc.cluster_ips)
        if not pairs:
            pairs = [(join("ns", "dns", zone), ip) for ip in own]
        return list(dict.fromkeys(pairs))


def _canonical(ip: str) -> str:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).compressed
    except ValueError:
        return ""


def _port_matches(port: Port, req: RecordRequest) -> bool:
    if req.port and port.name.lower() != req.port:
        return False
    return not (req.protocol and port.protocol.lower() != req.protocol)


# -- record builders -------------------------------------------------------------------------------


class RegisteringSRV(SRV):  # type: ignore[misc]  # dnslib is untyped
    """SRV rdata whose target is written uncompressed but entered in the compression table.

    dnslib writes SRV targets without registering them, so the glue records that follow cannot
    point back at them; CoreDNS's library registers them, and replies must pack to the same size
    for the same truncation decisions (spec §24).
    """

    def pack(self, buffer: object) -> None:
        """Write priority, weight, port and the target, registering each suffix of the target."""
        buffer.pack("!HHH", self.priority, self.weight, self.port)  # type: ignore[attr-defined]
        labels = list(self.target.label)
        names: dict[tuple[bytes, ...], int] = buffer.names  # type: ignore[attr-defined]
        for index, label in enumerate(labels):
            suffix = tuple(labels[index:])
            offset: int = buffer.offset  # type: ignore[attr-defined]
            if suffix not in names and offset <= MAX_POINTER_OFFSET:
                names[suffix] = offset
            buffer.pack("!B", len(label))  # type: ignore[attr-defined]
            buffer.append(label)  # type: ignore[attr-defined]
        buffer.append(b"\x00")  # type: ignore[attr-defined]


# Record builders take names as text and memoise what dnslib derives from it: `DNSLabel(text)`
# runs the IDNA codec over every label and costs more than the record itself, and an address's
# rdata is the same object for every reply. Labels and rdata are values nothing mutates; the
# records themselves are built fresh for every reply.


def label_of(name: Owner) -> DNSLabel:
    r"""Return the wire labels of a name: text read with its escapes (memoised), a DNSLabel as is.

    Text in the chain's form (`chain.request.name_text`): `a\.b.` is one label. Names without
    a backslash go to `DNSLabel(text)` as before. (DNSLabel compares without regard to case, so
    it must never be a memo key: the memo would hand back another letter case.)

    Raises:
        ValueError: text that is not a name (`chain.request.text_labels`).
    """
    if isinstance(name, DNSLabel):
        return name
    return _label(name)


@lru_cache(maxsize=16384)
def _label(name: str) -> DNSLabel:
    return DNSLabel(text_labels(name)) if "\\" in name else DNSLabel(name)


@lru_cache(maxsize=16384)
def _a(ip: str) -> A:
    return A(ip)


@lru_cache(maxsize=16384)
def _aaaa(ip: str) -> AAAA:
    return AAAA(ip)


def address_rr(owner: Owner, ip: str, ttl: int) -> RR:
    """An A or AAAA record for `ip`."""
    if family(ip) == 6:
        return RR(label_of(owner), rc.AAAA, rdata=_aaaa(ip), ttl=ttl)
    return RR(label_of(owner), rc.A, rdata=_a(ip), ttl=ttl)


def cname_rr(owner: Owner, target: str, ttl: int) -> RR:
    """A CNAME record."""
    return RR(label_of(owner), rc.CNAME, rdata=CNAME(label_of(target)), ttl=ttl)


def ptr_rr(owner: Owner, target: str, ttl: int) -> RR:
    """A PTR record."""
    return RR(label_of(owner), rc.PTR, rdata=PTR(label_of(target)), ttl=ttl)


def ns_rr(owner: Owner, target: str, ttl: int) -> RR:
    """An NS record."""
    return RR(label_of(owner), rc.NS, rdata=NS(label_of(target)), ttl=ttl)


@lru_cache(maxsize=256)
def _soa(zone: str, ttl: int, serial: int) -> SOA:
    return SOA(
        label_of(join("ns", "dns", zone)),
        label_of(join("hostmaster", zone)),
        (serial, SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S, ttl),
    )


def soa_rr(zone: str, ttl: int, serial: int) -> RR:
    """The zone's SOA: owner and names in `zone`'s letter case, record TTL min(ttl, 300)."""
    return RR(label_of(zone), rc.SOA, rdata=_soa(zone, ttl, serial), ttl=min(ttl, MAX_SOA_TTL_S))


def dns_version_rr(owner: Owner) -> RR:
    """`dns-version.<zone>. 28800 IN TXT "1.1.0"`."""
    return RR(label_of(owner), rc.TXT, rdata=TXT(DNS_SCHEMA_VERSION), ttl=DNS_VERSION_TTL_S)


def srv_weight(count: int) -> int:
    """floor(100 / count), at least 1 (count is taken before de-duplication, quirk Q9)."""
    return max(1, 100 // count) if count > 0 else 100


def srv_records(
    owner: Owner, items: Iterable[Item], zone: str, ttl: int
) -> tuple[list[RR], list[RR]]:
    """SRV answers and their glue for the triples among `items` (spec §6.5).

    Port -1 triples count for the weight but make no record; ExternalName targets make none.
    SRV records are unique by (target, port), glue by (target, address).
    """
    triples = [i for i in items if isinstance(i, Triple)]
    weight = srv_weight(len(triples))
    answers: list[RR] = []
    extra: list[RR] = []
    seen_srv: set[tuple[str, int]] = set()
    seen_glue: set[tuple[str, str]] = set()
    for t in triples:
        if t.port.port == -1:
            continue
        target = t.target(zone)
        if (target, t.port.port) not in seen_srv:
            seen_srv.add((target, t.port.port))
            rdata = RegisteringSRV(0, weight, t.port.port, label_of(target))
            answers.append(RR(label_of(owner), rc.SRV, rdata=rdata, ttl=ttl))
        if (target, t.address) not in seen_glue:
            seen_glue.add((target, t.address))
            extra.append(address_rr(target, t.address, ttl))
    return answers, extra
