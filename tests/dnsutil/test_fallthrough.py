"""The shared `fallthrough [ZONES...]` option."""

from __future__ import annotations

import pytest

from clusterdns.chain.order import DIRECTIVES
from clusterdns.corefile import parse
from clusterdns.dnsutil.fallthrough import NEVER, Fallthrough, parse_fallthrough


def test_no_zones_means_every_zone() -> None:
    fall = parse_fallthrough([])
    assert fall == Fallthrough((".",))
    assert fall.enabled
    assert fall.through("anything.example.org.")
    assert fall.through(".")


def test_never() -> None:
    assert not NEVER.enabled
    assert not NEVER.through("example.org.")
    assert Fallthrough() == NEVER


def test_zones_are_normalised_like_keys() -> None:
    fall = parse_fallthrough(["In-Addr.Arpa", "ip6.arpa.", "example.org:53", "10.0.0.0/23"])
    assert fall.zones == (
        "in-addr.arpa.",
        "ip6.arpa.",
        "example.org.",
        "0.0.10.in-addr.arpa.",
        "1.0.10.in-addr.arpa.",
    )


@pytest.mark.parametrize(
    ("name", "through"),
    [
        ("1.0.0.10.in-addr.arpa.", True),
        ("in-addr.arpa.", True),
        ("x.example.org.", True),
        ("badexample.org.", False),
        ("cluster.local.", False),
        ("arpa.", False),
    ],
)
def test_through_only_inside_listed_zones(name: str, through: bool) -> None:
    fall = parse_fallthrough(["in-addr.arpa", "example.org"])
    assert fall.through(name) is through


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("a..b", "zone is not a valid domain name: a..b"),
        ("::/0", "invalid CIDR ::/0"),
        ("", "zone is not a valid domain name: "),
    ],
)
def test_bad_zone_is_a_value_error(value: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fallthrough(["example.org", value])
    assert str(info.value) == error


def test_option_from_a_corefile_keeps_its_line() -> None:
    text = ". {\n    kubernetes cluster.local {\n        fallthrough in-addr.arpa a..b\n    }\n}\n"
    (block,) = parse(text, "Corefile", DIRECTIVES)
    (opt,) = block.directives[0].options
    assert opt.name == "fallthrough"
    with pytest.raises(ValueError) as info:
        parse_fallthrough(opt.values)
    err = opt.error(str(info.value))
    assert str(err) == "Corefile:3: kubernetes: zone is not a valid domain name: a..b"
