"""Domain-name helpers: absolute form, zone matching, validation, reverse zones."""

from __future__ import annotations

import pytest

from clusterdns.dnsutil.names import (
    fqdn,
    is_reverse,
    is_subdomain,
    match_zone,
    normalize,
    strip_zone,
    valid_domain,
)


@pytest.mark.parametrize(
    ("name", "absolute"),
    [("", "."), (".", "."), ("example.org", "example.org."), ("example.org.", "example.org.")],
)
def test_fqdn(name: str, absolute: str) -> None:
    assert fqdn(name) == absolute


def test_normalize_lowers_and_qualifies() -> None:
    assert normalize("Cluster.LOCAL") == "cluster.local."
    assert normalize("") == "."


@pytest.mark.parametrize(
    ("name", "zone", "inside"),
    [
        ("a.example.org.", "example.org.", True),
        ("example.org.", "example.org.", True),
        ("anything.", ".", True),
        (".", ".", True),
        ("badexample.org.", "example.org.", False),
        ("example.org.", "a.example.org.", False),
        ("org.", "example.org.", False),
    ],
)
def test_is_subdomain(name: str, zone: str, inside: bool) -> None:
    assert is_subdomain(name, zone) is inside


def test_match_zone_picks_the_longest() -> None:
    zones = [".", "cluster.local.", "svc.cluster.local."]
    assert match_zone("a.b.svc.cluster.local.", zones) == "svc.cluster.local."
    assert match_zone("pod.cluster.local.", zones) == "cluster.local."
    assert match_zone("example.org.", zones) == "."
    assert match_zone("example.org.", ["cluster.local."]) is None
    assert match_zone("example.org.", []) is None


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        (".", True),
        ("example.org.", True),
        ("a" * 63 + ".org.", True),
        ("a" * 64 + ".org.", False),
        ("example.org", False),  # not absolute
        ("a..b.", False),
        (".example.org.", False),
        ("..", False),
        ("10.0.0.0/33.", True),  # DNS names may hold any byte
        (".".join(["a" * 63] * 4)[:254] + ".", True),
        (".".join(["a" * 63] * 4) + ".", False),  # 256 characters
    ],
)
def test_valid_domain(name: str, valid: bool) -> None:
    assert valid_domain(name) is valid


@pytest.mark.parametrize(
    ("zone", "reverse"),
    [
        ("in-addr.arpa.", True),
        ("ip6.arpa.", True),
        ("0.0.10.in-addr.arpa.", True),
        ("8.b.d.0.1.0.0.2.IP6.ARPA.", True),
        ("xin-addr.arpa.", False),
        ("fooip6.arpa.", False),
        ("arpa.", False),
        ("example.org.", False),
    ],
)
def test_is_reverse(zone: str, reverse: bool) -> None:
    assert is_reverse(zone) is reverse


@pytest.mark.parametrize(
    ("name", "zone", "rest"),
    [
        ("a.b.example.org.", "example.org.", "a.b"),
        ("example.org.", "example.org.", ""),
        ("a.b.", ".", "a.b"),
        (".", ".", ""),
    ],
)
def test_strip_zone(name: str, zone: str, rest: str) -> None:
    assert strip_zone(name, zone) == rest
