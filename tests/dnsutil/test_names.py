"""Domain-name helpers: absolute form, zone matching, validation, reverse zones."""

from __future__ import annotations

import pytest

from clusterdns.chain.request import name_text
from clusterdns.dnsutil.names import (
    escaped_at,
    fqdn,
    is_reverse,
    is_subdomain,
    label_octets,
    match_zone,
    normalize,
    parent,
    split_labels,
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
        # escaped text: a dot after an odd number of backslashes is inside a label
        (r"evil\.example.org.", "example.org.", False),  # the label `evil.example` under org.
        (r"evil\.example.org.", "org.", True),
        (r"a\\.example.org.", "example.org.", True),  # the label `a\`
        (r"a\\\.example.org.", "example.org.", False),  # `a\.example`
        (r"a\\\\.example.org.", "example.org.", True),
        (r"\.example.org.", "example.org.", False),  # the label `.example`
        (r"a\.b.example.org.", "example.org.", True),
        (r"a.example\.org.", "example.org.", False),
        (r"a.example\.org.", r"example\.org.", True),
        (r"a\\example\.org.", r"example\.org.", False),  # the label `a\example.org`
        (r"x\255.example.org.", "example.org.", True),
        (r"x\255.example.org.", "255.example.org.", False),
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
    assert match_zone(r"evil\.cluster.local.", zones) == "."
    assert match_zone(r"x.evil\.cluster.local.", ["cluster.local.", "local."]) == "local."
    assert match_zone(r"a\.svc.cluster.local.", zones) == "cluster.local."


@pytest.mark.parametrize(
    "labels",
    [
        (b"evil.cluster", b"local"),
        (b"a\\", b"b.", b"c"),
        (b"\\.", b".\\", b"."),
        (b"x\xff", b"\x00y", b" "),
        (b"cluster", b"local"),
    ],
)
def test_split_labels_and_parent_read_the_text_of_wire_labels(labels: tuple[bytes, ...]) -> None:
    text = name_text(labels)
    parts = split_labels(text[:-1])
    assert len(parts) == len(labels)
    assert [name_text((label,)) for label in labels] == [p + "." for p in parts]
    assert parent(text) == name_text(labels[1:])
    assert [label_octets(p) for p in parts] == [len(label) for label in labels]
    assert valid_domain(text)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("a.b", ["a", "b"]),
        ("", [""]),
        (r"a\.b", [r"a\.b"]),
        (r"a\\.b", [r"a\\", "b"]),
        (r"a\\\.b.c", [r"a\\\.b", "c"]),
        ("a..b", ["a", "", "b"]),
        (r"a\..b", [r"a\.", "b"]),
    ],
)
def test_split_labels(name: str, parts: list[str]) -> None:
    assert split_labels(name) == parts


@pytest.mark.parametrize(
    ("name", "up"),
    [
        ("a.b.c.", "b.c."),
        ("c.", "."),
        (".", "."),
        (r"a\.b.c.", "c."),
        (r"a\\.b.c.", "b.c."),
        (r"a\.b\.c.", "."),
    ],
)
def test_parent(name: str, up: str) -> None:
    assert parent(name) == up


def test_escaped_at() -> None:
    text = r"a\.b\\.c\\\.d"
    dots = [i for i, c in enumerate(text) if c == "."]
    assert [escaped_at(text, i) for i in dots] == [True, False, True]
    assert not escaped_at("a.b", 1) and not escaped_at(".", 0)


@pytest.mark.parametrize(
    ("label", "octets"),
    [
        ("abc", 3),
        (r"a\.b", 3),
        (r"a\\", 2),
        (r"\255\000", 2),
        (r"\25x", 3),  # not three digits: `\2` is the character 2
        ("é", 2),
        (r"\é", 2),
        (r"\256", None),
        ("a\\", None),  # a backslash at the end
    ],
)
def test_label_octets(label: str, octets: int | None) -> None:
    assert label_octets(label) == octets


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
        # escaped text
        (r"a\..b.", True),  # the labels `a.` and `b`
        (r"a\.b.", True),
        (r"a\.", False),  # ends inside a label: not absolute
        (r"a\\.", True),
        ("\\065" * 63 + ".org.", True),  # 63 octets written with 252 characters
        ("\\065" * 64 + ".org.", False),
        ("a\\.b" * 22 + ".org.", False),  # 66 octets
        ("a\\.b" * 20 + "xyz.org.", True),
        (r"\256.org.", False),
        (".".join(["\\097" * 63] * 3 + ["\\097" * 62]) + ".", True),  # 255 characters unescaped
        (".".join(["\\097" * 63] * 4) + ".", False),  # 256
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
        (r"x\.in-addr.arpa.", False),
        (r"x.0\.in-addr.arpa.", False),
        (r"x\.0.in-addr.arpa.", True),
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
