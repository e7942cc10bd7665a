"""Slim, immutable records of the API objects DNS needs, converted from raw API JSON.

Only the fields DNS answers depend on are kept (spec §6.2); nothing of the client's model
objects survives. Converters take the decoded JSON dict of one object (as a list item, a watch
event's `object`, or a YAML document) and return None for objects DNS ignores.
"""

from __future__ import annotations

import enum
import ipaddress
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

JSON = dict[str, Any]


class Kind(enum.Enum):
    """The watched resource kinds."""

    SERVICE = "services"
    ENDPOINTSLICE = "endpointslices"
    NAMESPACE = "namespaces"
    POD = "pods"


@dataclass(frozen=True, slots=True)
class Port:
    """A service or slice port; `port` is -1 when absent (a service without ports gets one)."""

    name: str
    protocol: str
    port: int


NO_PORT = (Port("", "", -1),)


@dataclass(frozen=True, slots=True)
class Service:
    """A Service as DNS sees it."""

    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]
    external_name: str
    ports: tuple[Port, ...]
    external_ips: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)

    @property
    def headless(self) -> bool:
        """Whether the first cluster IP is the string `None`."""
        return bool(self.cluster_ips) and self.cluster_ips[0] == "None"

    @property
    def is_external_name(self) -> bool:
        """Whether this is an ExternalName service."""
        return self.type == "ExternalName"


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    """One ready address of an EndpointSlice endpoint."""

    ip: str
    hostname: str = ""
    node_name: str = ""
    target_name: str = ""
    """The targetRef (pod) name, kept only when shorter than 64 characters."""


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """An EndpointSlice reduced to its service, ports and ready addresses."""

    namespace: str
    name: str
    service: str
    ports: tuple[Port, ...]
    addresses: tuple[EndpointAddress, ...]
    trigger_time: float | None = None
    """Unix time of the last-change-trigger-time annotation (programming-latency metric)."""

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, slice name)."""
        return (self.namespace, self.name)

    @property
    def service_key(self) -> tuple[str, str]:
        """(namespace, service name)."""
        return (self.namespace, self.service)

    def dns_view(self) -> tuple[object, ...]:
        """What answers depend on (for deciding whether an update moves the SOA serial)."""
        return (self.service, self.ports, self.addresses)


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Namespace (only its existence matters)."""

    name: str

    @property
    def key(self) -> tuple[str, str]:
        """("", name)."""
        return ("", self.name)


@dataclass(frozen=True, slots=True)
class Pod:
    """A Pod reduced to its primary IP."""

    namespace: str
    name: str
    ip: str
    deleting: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)


Object = Service | EndpointSlice | Namespace | Pod


def canonical_ip(text: str) -> str:
    """The canonical text of an IP address (compressed IPv6); the input unchanged if not an IP."""
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def _s(value: object) -> str:
    return sys.intern(value) if isinstance(value, str) else ""


def _ports(items: list[JSON] | None, *, default_protocol: str) -> tuple[Port, ...]:
    out = []
    for p in items or ():
        number = p.get("port")
        out.append(
            Port(
                _s(p.get("name") or ""),
                _s(p.get("protocol") or default_protocol),
                int(number) if isinstance(number, int) else -1,
            )
        )
    return tuple(out) or NO_PORT


def service_from_api(d: JSON) -> Service | None:
    """Convert a Service; None when it lacks a name or namespace."""
    meta = d.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name or not namespace:
        return None
    spec = d.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    external: list[str] = list(spec.get("externalIPs") or [])
    for ingress in ((d.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        value = ingress.get("ip") or ingress.get("hostname")
        if value:
            external.append(value)
    return Service(
        namespace=_s(namespace),
        name=_s(name),
        type=_s(spec.get("type") or ("ExternalName" if spec.get("externalName") else "ClusterIP")),
        cluster_ips=tuple(ip if ip == "None" else canonical_ip(ip) for ip in ips),
        external_name=spec.get("externalName") or "",
        ports=_ports(spec.get("ports"), default_protocol="TCP"),
        external_ips=tuple(external),
    )


def _trigger_time(meta: JSON) -> float | None:
    value = (meta.get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def endpointslice_from_api(d: JSON) -> EndpointSlice | None:
    """Convert an EndpointSlice; None when it names no service."""
    meta = d.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not name or not namespace or not service:
        return None
    addresses: list[EndpointAddress] = []
    for ep in d.get("endpoints") or ():
        if (ep.get("conditions") or {}).get("ready") is False:
            continue
        target = (ep.get("targetRef") or {}).get("name") or ""
        hostname = _s(ep.get("hostname") or "")
        node = _s(ep.get("nodeName") or "")
        target = target if len(target) < 64 else ""
        for ip in ep.get("addresses") or ():
            addresses.append(EndpointAddress(canonical_ip(ip), hostname, node, target))
    return EndpointSlice(
        namespace=_s(namespace),
        name=name,
        service=_s(service),
        ports=_ports(d.get("ports"), default_protocol=""),
        addresses=tuple(addresses),
        trigger_time=_trigger_time(meta),
    )


def namespace_from_api(d: JSON) -> Namespace | None:
    """Convert a Namespace."""
    name = (d.get("metadata") or {}).get("name")
    return Namespace(_s(name)) if name else None


def pod_from_api(d: JSON) -> Pod | None:
    """Convert a Pod; None without an IP or in a finished phase."""
    meta = d.get("metadata") or {}
    status = d.get("status") or {}
    name, namespace, ip = meta.get("name"), meta.get("namespace"), status.get("podIP")
    if not name or not namespace or not ip:
        return None
    if status.get("phase") in ("Succeeded", "Failed", "Unknown"):
        return None
    return Pod(_s(namespace), name, canonical_ip(ip), deleting=bool(meta.get("deletionTimestamp")))


CONVERTERS = {
    Kind.SERVICE: service_from_api,
    Kind.ENDPOINTSLICE: endpointslice_from_api,
    Kind.NAMESPACE: namespace_from_api,
    Kind.POD: pod_from_api,
}

KIND_OF_API = {
    "Service": Kind.SERVICE,
    "EndpointSlice": Kind.ENDPOINTSLICE,
    "Namespace": Kind.NAMESPACE,
    "Pod": Kind.POD,
}


def from_api(kind: Kind, d: JSON) -> Object | None:
    """Convert one raw API object of `kind`."""
    converted: Object | None = CONVERTERS[kind](d)
    return converted
