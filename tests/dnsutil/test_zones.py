"""Server-block keys -> ZoneAddr, CIDR keys -> reverse zones, plugin ZONES arguments."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from clusterdns.dnsutil.zones import (
    KeyError_,
    ZoneAddr,
    parse_cidr,
    parse_key,
    reverse_zones,
    zones_from_arg,
    zones_of,
)

LABEL63 = "a" * 63
NAME_255 = ".".join([LABEL63] * 4)  # 255 characters; 256 once made absolute
NAME_253 = ".".join([LABEL63, LABEL63, LABEL63, "a" * 61])

V6_DOC = "8.b.d.0.1.0.0.2.ip6.arpa."


@dataclass(frozen=True, kw_only=True)
class KeyCase:
    key: str
    default_port: int = 53
    addrs: tuple[str, ...] = ()
    """Expected ZoneAddrs as `scheme://zone:port` text, in order."""
    error: str | None = None

    def id(self) -> str:
        return f"{self.key[:40]}@{self.default_port}"


KEY_CASES = [
    KeyCase(key=".", addrs=("dns://.:53",)),
    KeyCase(key=".:53", addrs=("dns://.:53",)),
    KeyCase(key="dns://.:53", addrs=("dns://.:53",)),
    KeyCase(key="dns://.", addrs=("dns://.:53",)),
    KeyCase(key=".", default_port=1053, addrs=("dns://.:1053",)),
    KeyCase(key=".:53", default_port=1053, addrs=("dns://.:53",)),
    KeyCase(key=".:0", addrs=("dns://.:0",)),
    KeyCase(key="cluster.local", addrs=("dns://cluster.local.:53",)),
    KeyCase(key="Cluster.LOCAL.", addrs=("dns://cluster.local.:53",)),
    KeyCase(key="example.org:1053", addrs=("dns://example.org.:1053",)),
    KeyCase(key="example.org:053", addrs=("dns://example.org.:53",)),
    KeyCase(key="example.org:+53", addrs=("dns://example.org.:53",)),
    # A non-numeric tail after the last colon is part of the (odd but valid) zone name.
    KeyCase(key="example.org:http", addrs=("dns://example.org:http.:53",)),
    KeyCase(key="example.org:53:54", addrs=("dns://example.org:53.:54",)),
    KeyCase(key=NAME_253, addrs=(f"dns://{NAME_253}.:53",)),
    # IPv4 prefixes
    KeyCase(key="10.0.0.0/24", addrs=("dns://0.0.10.in-addr.arpa.:53",)),
    KeyCase(
        key="10.0.0.0/23",
        addrs=("dns://0.0.10.in-addr.arpa.:53", "dns://1.0.10.in-addr.arpa.:53"),
    ),
    KeyCase(
        key="10.0.0.0/23:1053",
        addrs=("dns://0.0.10.in-addr.arpa.:1053", "dns://1.0.10.in-addr.arpa.:1053"),
    ),
    KeyCase(key="10.1.2.3/8", addrs=("dns://10.in-addr.arpa.:53",)),
    KeyCase(key="10.0.0.0/32", addrs=("dns://0.0.0.10.in-addr.arpa.:53",)),
    KeyCase(
        key="10.0.0.0/31",
        addrs=("dns://0.0.0.10.in-addr.arpa.:53", "dns://1.0.0.10.in-addr.arpa.:53"),
    ),
    KeyCase(key="0.0.0.0/0", addrs=("dns://in-addr.arpa.:53",)),
    KeyCase(key="10.0.0.0/024", addrs=("dns://0.0.10.in-addr.arpa.:53",)),
    # Not an address prefix (Go's ParseCIDR fails): served as a literal zone.
    KeyCase(key="10.0.0.0/33", addrs=("dns://10.0.0.0/33.:53",)),
    KeyCase(key="10.0.0.0/255.255.255.0", addrs=("dns://10.0.0.0/255.255.255.0.:53",)),
    KeyCase(key="10.0.0/24", addrs=("dns://10.0.0/24.:53",)),
    KeyCase(key="fe80::%eth0/64", addrs=("dns://fe80::%eth0/64.:53",)),
    KeyCase(key="0:foo/x", addrs=("dns://0:foo/x.:53",)),
    # IPv6 prefixes, on and off nibble boundaries
    KeyCase(key="2001:db8::/32", addrs=(f"dns://{V6_DOC}:53",)),
    KeyCase(key="2001:DB8::/32:1053", addrs=(f"dns://{V6_DOC}:1053",)),
    KeyCase(key="fd00::/8", addrs=("dns://d.f.ip6.arpa.:53",)),
    KeyCase(key="fd00::/7", addrs=("dns://c.f.ip6.arpa.:53", "dns://d.f.ip6.arpa.:53")),
    KeyCase(
        key="2001:db8::/34",
        addrs=tuple(f"dns://{n}.8.b.d.0.1.0.0.2.ip6.arpa.:53" for n in "0123"),
    ),
    KeyCase(
        key="2001:db8::/33",
        addrs=tuple(f"dns://{n}.8.b.d.0.1.0.0.2.ip6.arpa.:53" for n in "01234567"),
    ),
    KeyCase(
        key="2001:db8::/128",
        addrs=("dns://" + "0." * 24 + V6_DOC + ":53",),
    ),
    KeyCase(
        key="2001:db8::/126",
        addrs=tuple(f"dns://{n}." + "0." * 23 + V6_DOC + ":53" for n in "0123"),
    ),
    # errors
    KeyCase(key="::/0", error="invalid CIDR ::/0"),
    KeyCase(key="::1/128", error="invalid CIDR ::1/128"),
    KeyCase(key="0:0::/16", error="invalid CIDR 0:0::/16"),
    KeyCase(key="tls://.", error="scheme tls:// is not supported by clusterdns (only dns://)"),
    KeyCase(
        key="grpc://.:443", error="scheme grpc:// is not supported by clusterdns (only dns://)"
    ),
    KeyCase(key="foo://.", error="unknown scheme foo:// in 'foo://.'"),
    KeyCase(key="dns://a://b", error="provided value is not in an address format: dns://a://b"),
    KeyCase(key=":53", error="zone is not a valid domain name: "),
    KeyCase(key="", error="zone is not a valid domain name: "),
    KeyCase(key="example.org:", error="expecting data after last colon: 'example.org:'"),
    KeyCase(key="example.org:-1", error="port -1 out of range in 'example.org:-1'"),
    KeyCase(key="example.org:65536", error="port 65536 out of range in 'example.org:65536'"),
    KeyCase(key="a..b", error="zone is not a valid domain name: a..b"),
    KeyCase(key=".example.org", error="zone is not a valid domain name: .example.org"),
    KeyCase(key="a" * 64 + ".org", error=f"zone is not a valid domain name: {'a' * 64}.org"),
    KeyCase(key=NAME_255, error="specified zone is too long: 256 > 255"),
    KeyCase(key="a." * 150, error="specified zone is too long: 300 > 255"),
]


@pytest.mark.parametrize("case", KEY_CASES, ids=KeyCase.id)
def test_parse_key(case: KeyCase) -> None:
    if case.error is not None:
        with pytest.raises(KeyError_) as info:
            parse_key(case.key, case.default_port)
        assert str(info.value) == case.error
        return
    assert [str(a) for a in parse_key(case.key, case.default_port)] == list(case.addrs)


def test_zone_addr_fields_and_text() -> None:
    (addr,) = parse_key("example.org:1053", 53)
    assert addr == ZoneAddr("dns", "example.org.", 1053)
    assert str(addr) == "dns://example.org.:1053"
    assert parse_key(".", 53) == parse_key("dns://.:53", 53) == parse_key(".:53", 1053)


def test_key_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_key("::/0", 53)


@pytest.mark.parametrize(
    ("arg", "zones"),
    [
        ("example.org", ["example.org."]),
        ("Example.ORG:53", ["example.org."]),
        ("dns://example.org:1053", ["example.org."]),
        ("tls://example.org", ["example.org."]),
        ("10.0.0.0/23", ["0.0.10.in-addr.arpa.", "1.0.10.in-addr.arpa."]),
        ("in-addr.arpa", ["in-addr.arpa."]),
        (".", ["."]),
    ],
)
def test_zones_from_arg(arg: str, zones: list[str]) -> None:
    assert zones_from_arg(arg) == zones


@pytest.mark.parametrize(
    ("arg", "error"),
    [
        ("a..b", "zone is not a valid domain name: a..b"),
        ("::/0", "invalid CIDR ::/0"),
        ("foo://x", "unknown scheme foo:// in 'foo://x'"),
        ("x:", "expecting data after last colon: 'x:'"),
    ],
)
def test_zones_from_arg_errors(arg: str, error: str) -> None:
    with pytest.raises(KeyError_) as info:
        zones_from_arg(arg)
    assert str(info.value) == error


def test_zones_of_takes_no_port() -> None:
    assert zones_of("example.org:53") == ["example.org:53."]
    assert zones_of("10.0.0.0/24") == ["0.0.10.in-addr.arpa."]


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.0/24", "10.0.0.0/24"),
        ("10.0.0.7/24", "10.0.0.0/24"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("10.0.0.0/024", "10.0.0.0/24"),
        ("10.0.0.0", None),
        ("10.0.0.0/", None),
        ("10.0.0.0/x", None),
        ("10.0.0.0/+24", None),
        ("10.0.0.0/255.255.255.0", None),
        ("10.0.0.0/33", None),
        ("fe80::%eth0/64", None),
        ("010.0.0.0/8", None),
        ("example.org/24", None),
    ],
)
def test_parse_cidr(text: str, network: str | None) -> None:
    net = parse_cidr(text)
    assert (None if net is None else str(net)) == network


def test_reverse_zones_cover_the_prefix() -> None:
    net = ipaddress.ip_network("192.168.0.0/22")
    assert reverse_zones(net) == [f"{n}.168.192.in-addr.arpa." for n in range(4)]
    assert reverse_zones(ipaddress.ip_network("::/0")) == ["ip6.arpa."]
