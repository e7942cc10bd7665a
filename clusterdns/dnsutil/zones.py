"""Server-block keys -> (scheme, zone, port) addresses, with CIDR keys expanded to reverse zones.

Follows CoreDNS (core/dnsserver/register.go, plugin/normalize.go): the port is whatever follows
the last colon when it is a number; the rest must be a domain name; a valid address prefix becomes
one reverse zone per octet (IPv4) or nibble (IPv6) boundary, anything else is a literal zone.
This module only computes names; it neither binds nor knows about plugins.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from clusterdns.dnsutil.names import normalize, valid_domain

SCHEMES: Final = ("dns", "tls", "https", "https3", "quic", "grpc")
SUPPORTED_SCHEMES: Final = ("dns",)
MAX_NAME_CHARS: Final = 255

_PORT = re.compile(r"[+-]?[0-9]+")
_PREFIX_LEN = re.compile(r"[0-9]+")
_INT64_MAX = (1 << 63) - 1


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
    scheme, rest = split_scheme(text)
    if scheme not in SUPPORTED_SCHEMES:
        raise KeyError_(f"scheme {scheme}:// is not supported by clusterdns (only dns://)")
    host, port = split_port(rest)
    if port is None:
        port = default_port
    elif not 0 <= port <= 65535:
        raise KeyError_(f"port {port} out of range in {text!r}")
    return [ZoneAddr(scheme, z, port) for z in zones_of(host)]


def split_scheme(text: str) -> tuple[str, str]:
    """Split `scheme://rest` (scheme lower-cased; `dns` when absent).

    Raises:
        KeyError_: more than one `://`, or a scheme CoreDNS does not know.
    """
    if "://" not in text:
        return "dns", text
    parts = text.split("://")
    if len(parts) != 2:
        raise KeyError_(f"provided value is not in an address format: {text}")
    scheme = parts[0].lower()
    if scheme not in SCHEMES:
        raise KeyError_(f"unknown scheme {scheme}:// in {text!r}")
    return scheme, parts[1]


def split_port(text: str) -> tuple[str, int | None]:
    """Split `host:port`: the port is what follows the last colon, if it is a (signed) number.

    Anything else after the last colon stays part of the host (IPv6 prefixes, odd zone names).

    Raises:
        KeyError_: the text ends in a colon.
    """
    colon = text.rfind(":")
    if colon < 0:
        return text, None
    if colon == len(text) - 1:
        raise KeyError_(f"expecting data after last colon: {text!r}")
    tail = text[colon + 1 :]
    if _PORT.fullmatch(tail) is None or len(tail) > 20:
        return text, None
    port = int(tail)
    if abs(port) > _INT64_MAX:  # Go's Atoi fails, so this is not a port but part of the host
        return text, None
    return text[:colon], port


def zones_of(host: str) -> list[str]:
    """Return the zone(s) a key's host part stands for (CIDRs become reverse zones).

    Raises:
        KeyError_: the host is too long, not a domain name, or a rejected IPv6 prefix.
    """
    if len(host) > MAX_NAME_CHARS:
        raise KeyError_(f"specified zone is too long: {len(host)} > {MAX_NAME_CHARS}")
    zone = normalize(host)
    if len(zone) > MAX_NAME_CHARS:
        raise KeyError_(f"specified zone is too long: {len(zone)} > {MAX_NAME_CHARS}")
    if host == "" or not valid_domain(zone):
        raise KeyError_(f"zone is not a valid domain name: {host}")
    net = parse_cidr(host)
    if net is None:
        return [zone]
    if host.startswith(":") or (host.startswith("0") and ":" in host):
        raise KeyError_(f"invalid CIDR {host}")
    return reverse_zones(net)


def zones_from_arg(text: str) -> list[str]:
    """Normalise a ZONES argument of a plugin option: any scheme and port are dropped.

    `example.org:53` -> `example.org.`, `dns://10.0.0.0/23` -> two reverse zones.

    Raises:
        KeyError_: not a valid zone, as for a server-block key.
    """
    _, rest = split_scheme(text)
    host, _ = split_port(rest)
    return zones_of(host)


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Parse `ADDRESS/BITS` as Go's net.ParseCIDR does, or return None.

    Unlike `ipaddress.ip_network`, a netmask in place of BITS and an IPv6 scope (`%eth0`) are
    not accepted; host bits may be set (they are masked off).
    """
    addr, slash, bits = text.partition("/")
    if not slash or _PREFIX_LEN.fullmatch(bits) is None or "%" in addr:
        return None
    try:
        return ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)
    except ValueError:
        return None


def reverse_zones(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """Reverse zones covering `net`, split on octet (IPv4) or nibble (IPv6) boundaries."""
    step = 8 if net.version == 4 else 4
    prefix = -(-net.prefixlen // step) * step
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = (
        [net] if prefix == net.prefixlen else list(net.subnets(new_prefix=prefix))
    )
    suffix = "in-addr.arpa." if net.version == 4 else "ip6.arpa."
    out: list[str] = []
    for sub in subnets:
        # reverse_pointer lists every label, least significant first; keep the covered ones.
        labels = sub.network_address.reverse_pointer.split(".")[:-2]
        keep = sub.prefixlen // step
        kept = labels[len(labels) - keep :] if keep else []
        out.append(".".join([*kept, suffix]))
    return out
