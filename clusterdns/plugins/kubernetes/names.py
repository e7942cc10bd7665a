r"""Query names of the kubernetes plugin -> typed requests (spec §6.3, §6.7, §6.8).

Pure functions over lower-case absolute names: no store, no configuration, no dnslib. The
handler decides what a parsed name means for a query type; this module only says what shape
the name has. Nothing here raises for any input: an unusable name is `NameKind.INVALID`.

Names are the chain's escaped text (`Request.name`), split only at dots that end a label (as
CoreDNS's `dns.SplitDomainName`): a label holding a byte the text escapes (a dot, a backslash,
a space, `"'();@`, or one outside 0x21-0x7e) keeps its escapes (`a\.b`, `\255`), so it never
matches a namespace, Service, port, endpoint or pod address: such a name is a name error like
any other unknown one. Only the
labels a pod name ignores, left of its address, may hold anything (as in CoreDNS).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final

from clusterdns.dnsutil.names import is_subdomain, split_labels, strip_zone

SVC: Final = "svc"
POD: Final = "pod"
DNS_VERSION_LABEL: Final = "dns-version"
NS_DNS_LABELS: Final = "ns.dns"
IN_ADDR_ARPA: Final = "in-addr.arpa."
IP6_ARPA: Final = "ip6.arpa."

_HEX: Final = frozenset("0123456789abcdef")
_DIGITS: Final = frozenset("0123456789")
_V6_CHARS: Final = frozenset("0123456789abcdefABCDEF:")


class NameKind(enum.Enum):
    """The shape of a name relative to its plugin zone."""

    APEX = "apex"
    """The zone itself."""
    DNS_VERSION = "dns-version"
    """`dns-version.<zone>`."""
    NS_DNS = "ns.dns"
    """`ns.dns.<zone>`, the name of the server's own NS record."""
    SVC_TYPE = "svc"
    """`svc.<zone>`."""
    POD_TYPE = "pod"
    """`pod.<zone>`."""
    SVC_NAMESPACE = "svc-namespace"
    """`<ns>.svc.<zone>`."""
    POD_NAMESPACE = "pod-namespace"
    """`<ns>.pod.<zone>`."""
    SERVICE = "service"
    """`[<endpoint>. | <port>.<proto>.]<svc>.<ns>.svc.<zone>`."""
    POD = "pod-address"
    """`[<x>. | <x>.<y>.]<dashed-ip>.<ns>.pod.<zone>` (labels left of the address are ignored)."""
    REVERSE = "reverse"
    """A complete reverse name (4 labels under in-addr.arpa., 32 nibbles under ip6.arpa.)."""
    INVALID = "invalid"
    """Anything else: always a name error."""


@dataclass(frozen=True, slots=True)
class RecordRequest:
    """A parsed query name. Fields not used by the kind are empty strings."""

    kind: NameKind
    namespace: str = ""
    service: str = ""
    """The service name (SERVICE), or the address label (POD)."""
    endpoint: str = ""
    port: str = ""
    """Port name without its optional leading underscore."""
    protocol: str = ""
    """Protocol without its optional leading underscore (e.g. `tcp`)."""
    address: str = ""
    """REVERSE: the address in canonical text form."""

    @property
    def has_subname(self) -> bool:
        """Whether an endpoint, port or protocol label was given."""
        return bool(self.endpoint or self.port or self.protocol)


APEX: Final = RecordRequest(NameKind.APEX)
INVALID: Final = RecordRequest(NameKind.INVALID)


def is_reverse(name: str) -> bool:
    """Whether a lower-case absolute name is in the in-addr.arpa. or ip6.arpa. tree."""
    return is_subdomain(name, IN_ADDR_ARPA) or is_subdomain(name, IP6_ARPA)


def _strip_underscore(label: str) -> str:
    return label[1:] if label.startswith("_") else label


def parse(name: str, zone: str) -> RecordRequest:
    """Parse lower-case absolute `name`, which lies at or below lower-case absolute `zone`.

    The apex, `dns-version` and `ns.dns` are recognised in every zone, reverse ones included;
    other names in the reverse trees are either complete reverse names or invalid.
    """
    rel = strip_zone(name, zone)
    if rel == "":
        return APEX
    if rel == DNS_VERSION_LABEL:
        return RecordRequest(NameKind.DNS_VERSION)
    if rel == NS_DNS_LABELS:
        return RecordRequest(NameKind.NS_DNS)
    if is_reverse(name):
        address = reverse_address(name)
        if address is None:
            return INVALID
        return RecordRequest(NameKind.REVERSE, address=address)
    labels = split_labels(rel)
    top = labels[-1]
    if top not in (SVC, POD):
        return INVALID
    is_svc = top == SVC
    rest = labels[:-1]
    if not rest:
        return RecordRequest(NameKind.SVC_TYPE if is_svc else NameKind.POD_TYPE)
    namespace = rest[-1]
    if len(rest) == 1:
        kind = NameKind.SVC_NAMESPACE if is_svc else NameKind.POD_NAMESPACE
        return RecordRequest(kind, namespace=namespace)
    service = rest[-2]
    extra = rest[:-2]
    kind = NameKind.SERVICE if is_svc else NameKind.POD
    if not extra:
        return RecordRequest(kind, namespace=namespace, service=service)
    if len(extra) == 1:
        return RecordRequest(kind, namespace=namespace, service=service, endpoint=extra[0])
    if len(extra) == 2:
        return RecordRequest(
            kind,
            namespace=namespace,
            service=service,
            port=_strip_underscore(extra[0]),
            protocol=_strip_underscore(extra[1]),
        )
    return INVALID


def reverse_address(name: str) -> str | None:
    """The address a complete reverse name stands for, canonical; None for any other name.

    `1.0.96.10.in-addr.arpa.` -> `10.96.0.1`; 32 single-hex-digit labels under `ip6.arpa.` ->
    the compressed IPv6 text. Octets with leading zeros do not parse.
    """
    if name != IN_ADDR_ARPA and is_subdomain(name, IN_ADDR_ARPA):
        labels = split_labels(name[: -len(IN_ADDR_ARPA) - 1])
        if len(labels) != 4 or not all(label and set(label) <= _DIGITS for label in labels):
            return None
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(labels))))
        except ValueError:
            return None
    if name != IP6_ARPA and is_subdomain(name, IP6_ARPA):
        labels = split_labels(name[: -len(IP6_ARPA) - 1])
        if len(labels) != 32 or not all(len(label) == 1 and label in _HEX for label in labels):
            return None
        digits = "".join(reversed(labels))
        groups = ":".join(digits[i : i + 4] for i in range(0, 32, 4))
        return ipaddress.IPv6Address(groups).compressed
    return None


def pod_address(label: str) -> tuple[str, int] | None:
    """The address a pod label encodes and its family (4 or 6), or None.

    Exactly three `-` and no `--`: every `-` becomes `.` and the result must be an IPv4
    address (no leading zeros). Otherwise every `-` becomes `:` and the result must be an IPv6
    address (no zone index, no embedded dotted quad).
    """
    if label.count("-") == 3 and "--" not in label:
        if not set(label) <= _DIGITS | {"-"}:
            return None
        try:
            return str(ipaddress.IPv4Address(label.replace("-", "."))), 4
        except ValueError:
            return None
    text = label.replace("-", ":")
    if not text or not set(text) <= _V6_CHARS:
        return None
    try:
        return ipaddress.IPv6Address(text).compressed, 6
    except ValueError:
        return None


def dashed_address(ip: str) -> str:
    """The endpoint name of an address without hostname (spec §6.3 rule 3).

    IPv4 `10.244.3.12` -> `10-244-3-12`; IPv6 text with `:` -> `-`, and a trailing `0` when
    that ends in `-` (`2001:db8::` -> `2001-db8--0`).
    """
    if ":" not in ip:
        return ip.replace(".", "-")
    dashed = ip.replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed
