"""Server-block keys -> (scheme, zone, port) addresses, with CIDR keys expanded to reverse zones."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from clusterdns.dnsutil.names import normalize, valid_domain

SCHEMES = ("dns", "tls", "https", "https3", "quic", "grpc")
SUPPORTED_SCHEMES = ("dns",)


@dataclass(frozen=True, slots=True)
class ZoneAddr:
    """One key of a server block after normalisation."""

    scheme: str
    zone: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.zone}:{self.port}"


class KeyError_(ValueError):
    """A key that cannot be served; the message says why."""


def parse_key(text: str, default_port: int) -> list[ZoneAddr]:
    """Normalise one server-block key.

    `cluster.local` -> dns://cluster.local.:PORT; `10.0.0.0/23` -> two reverse zones.

    Raises:
        KeyError_: unsupported scheme, bad port, invalid zone or CIDR.
    """
    scheme = "dns"
    rest = text
    if "://" in text:
        parts = text.split("://")
        if len(parts) != 2:
            raise KeyError_(f"provided value is not in an address format: {text}")
        scheme, rest = parts[0].lower(), parts[1]
        if scheme not in SCHEMES:
            raise KeyError_(f"unknown scheme {scheme}:// in {text!r}")
        if scheme not in SUPPORTED_SCHEMES:
            raise KeyError_(f"scheme {scheme}:// is not supported by clusterdns (only dns://)")
    port = default_port
    colon = rest.rfind(":")
    if colon == len(rest) - 1 and colon >= 0:
        raise KeyError_(f"expecting data after last colon: {text!r}")
    if colon != -1 and rest[colon + 1 :].isdigit():
        port = int(rest[colon + 1 :])
        rest = rest[:colon]
        if not 0 <= port <= 65535:
            raise KeyError_(f"port {port} out of range in {text!r}")
    if len(rest) > 255:
        raise KeyError_(f"specified zone is too long: {len(rest)} > 255")
    return [ZoneAddr(scheme, z, port) for z in zones_of(rest)]


def zones_of(host: str) -> list[str]:
    """Return the zone(s) a key's host part stands for (CIDRs become reverse zones)."""
    if "/" in host:
        if host.startswith(":") or (host.startswith("0") and ":" in host):
            raise KeyError_(f"invalid CIDR {host}")
        try:
            net = ipaddress.ip_network(host, strict=False)
        except ValueError:
            net = None
        if net is not None:
            return reverse_zones(net)
    zone = normalize(host)
    if not valid_domain(zone):
        raise KeyError_(f"zone is not a valid domain name: {host}")
    return [zone]


def reverse_zones(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """Reverse zones covering `net`, split on octet (IPv4) or nibble (IPv6) boundaries."""
    step = 8 if net.version == 4 else 4
    prefix = -(-net.prefixlen // step) * step
    subnets = [net] if prefix == net.prefixlen else list(net.subnets(new_prefix=prefix))
    out: list[str] = []
    for sub in subnets:
        labels = sub.network_address.reverse_pointer.split(".")
        # reverse_pointer has all labels; keep those covered by the prefix (rightmost first).
        suffix = ["in-addr", "arpa"] if sub.version == 4 else ["ip6", "arpa"]
        addr_labels = labels[: len(labels) - 2]
        keep = sub.prefixlen // step
        kept = addr_labels[len(addr_labels) - keep :] if keep else []
        out.append(".".join([*kept, *suffix]) + ".")
    return out
