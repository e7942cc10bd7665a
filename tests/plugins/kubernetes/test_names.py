"""names.py: every shape of spec §6.3, reverse names (§6.7), pod labels (§6.8), endpoint names."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterdns.plugins.kubernetes.names import (
    NameKind,
    RecordRequest,
    dashed_address,
    is_reverse,
    parse,
    pod_address,
    reverse_address,
)

Z = "cluster.local."

PARSE_CASES: list[tuple[str, str, RecordRequest]] = [
    # apex and special names
    ("cluster.local.", Z, RecordRequest(NameKind.APEX)),
    ("dns-version.cluster.local.", Z, RecordRequest(NameKind.DNS_VERSION)),
    ("ns.dns.cluster.local.", Z, RecordRequest(NameKind.NS_DNS)),
    ("dns.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    ("x.ns.dns.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    ("x.dns-version.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    # type level
    ("svc.cluster.local.", Z, RecordRequest(NameKind.SVC_TYPE)),
    ("pod.cluster.local.", Z, RecordRequest(NameKind.POD_TYPE)),
    ("foo.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    ("svc.foo.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    # namespace level
    ("prod.svc.cluster.local.", Z, RecordRequest(NameKind.SVC_NAMESPACE, namespace="prod")),
    ("prod.pod.cluster.local.", Z, RecordRequest(NameKind.POD_NAMESPACE, namespace="prod")),
    ("*.svc.cluster.local.", Z, RecordRequest(NameKind.SVC_NAMESPACE, namespace="*")),
    # service
    (
        "api.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="api"),
    ),
    (
        "any.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="any"),
    ),
    # endpoint
    (
        "web-0.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="web", endpoint="web-0"),
    ),
    (
        "_x.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="web", endpoint="_x"),
    ),
    # port and protocol, underscores optional on each
    (
        "_http._tcp.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(
            NameKind.SERVICE, namespace="prod", service="web", port="http", protocol="tcp"
        ),
    ),
    (
        "http.tcp.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(
            NameKind.SERVICE, namespace="prod", service="web", port="http", protocol="tcp"
        ),
    ),
    (
        "_http.tcp.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(
            NameKind.SERVICE, namespace="prod", service="web", port="http", protocol="tcp"
        ),
    ),
    (
        "__http._tcp.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(
            NameKind.SERVICE, namespace="prod", service="web", port="_http", protocol="tcp"
        ),
    ),
    (
        "_._tcp.web.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="web", port="", protocol="tcp"),
    ),
    # too long
    ("a.b.c.web.prod.svc.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    ("a.b.c.d.web.prod.svc.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    # pods, with the extra-labels quirk (Q6)
    (
        "10-244-1-30.prod.pod.cluster.local.",
        Z,
        RecordRequest(NameKind.POD, namespace="prod", service="10-244-1-30"),
    ),
    (
        "x.10-244-1-30.prod.pod.cluster.local.",
        Z,
        RecordRequest(NameKind.POD, namespace="prod", service="10-244-1-30", endpoint="x"),
    ),
    (
        "_a._b.10-244-1-30.prod.pod.cluster.local.",
        Z,
        RecordRequest(
            NameKind.POD, namespace="prod", service="10-244-1-30", port="a", protocol="b"
        ),
    ),
    ("a.b.c.10-244-1-30.prod.pod.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    # other zones, including the root
    ("api.prod.svc.", ".", RecordRequest(NameKind.SERVICE, namespace="prod", service="api")),
    (".", ".", RecordRequest(NameKind.APEX)),
    ("dns-version.", ".", RecordRequest(NameKind.DNS_VERSION)),
    (
        "api.prod.svc.example.org.",
        "example.org.",
        RecordRequest(NameKind.SERVICE, namespace="prod", service="api"),
    ),
    # reverse trees: complete names, partial names, special names
    (
        "1.0.96.10.in-addr.arpa.",
        "in-addr.arpa.",
        RecordRequest(NameKind.REVERSE, address="10.96.0.1"),
    ),
    (
        "1.0.96.10.in-addr.arpa.",
        "96.10.in-addr.arpa.",
        RecordRequest(NameKind.REVERSE, address="10.96.0.1"),
    ),
    ("0.96.10.in-addr.arpa.", "in-addr.arpa.", RecordRequest(NameKind.INVALID)),
    ("1.0.96.10.in-addr.arpa.", ".", RecordRequest(NameKind.REVERSE, address="10.96.0.1")),
    ("api.prod.svc.in-addr.arpa.", "in-addr.arpa.", RecordRequest(NameKind.INVALID)),
    ("in-addr.arpa.", "in-addr.arpa.", RecordRequest(NameKind.APEX)),
    ("ns.dns.in-addr.arpa.", "in-addr.arpa.", RecordRequest(NameKind.NS_DNS)),
    ("dns-version.ip6.arpa.", "ip6.arpa.", RecordRequest(NameKind.DNS_VERSION)),
    (
        "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
        "ip6.arpa.",
        RecordRequest(NameKind.REVERSE, address="fd00:10:96::5"),
    ),
    ("0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.", "ip6.arpa.", RecordRequest(NameKind.INVALID)),
    # escaped text (`Request.name`): only a dot after an even number of backslashes ends a label
    (
        r"api\.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SVC_NAMESPACE, namespace=r"api\.prod"),
    ),
    (
        r"a\.b.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service=r"a\.b"),
    ),
    (
        r"_http\._tcp.api.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="api", endpoint=r"_http\._tcp"),
    ),
    (
        r"a\\.api.prod.svc.cluster.local.",
        Z,
        RecordRequest(NameKind.SERVICE, namespace="prod", service="api", endpoint=r"a\\"),
    ),
    (
        r"\255.10-244-1-5.prod.pod.cluster.local.",
        Z,
        RecordRequest(NameKind.POD, namespace="prod", service="10-244-1-5", endpoint=r"\255"),
    ),
    (r"prod\.svc.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    (r"ns\.dns.cluster.local.", Z, RecordRequest(NameKind.INVALID)),
    (
        r"_p._t\.x.api.prod.svc.cluster.local.",
        Z,
        RecordRequest(
            NameKind.SERVICE, namespace="prod", service="api", port="p", protocol=r"t\.x"
        ),
    ),
    (r"1\.0.96.10.in-addr.arpa.", "in-addr.arpa.", RecordRequest(NameKind.INVALID)),
]


@pytest.mark.parametrize(
    ("name", "zone", "want"), PARSE_CASES, ids=[f"{n} in {z}" for n, z, _ in PARSE_CASES]
)
def test_parse(name: str, zone: str, want: RecordRequest) -> None:
    assert parse(name, zone) == want


def test_has_subname() -> None:
    assert not parse("api.prod.svc.cluster.local.", Z).has_subname
    assert parse("x.api.prod.svc.cluster.local.", Z).has_subname
    assert parse("_p._tcp.api.prod.svc.cluster.local.", Z).has_subname


REVERSE_CASES: list[tuple[str, str | None]] = [
    ("1.0.96.10.in-addr.arpa.", "10.96.0.1"),
    ("255.255.255.255.in-addr.arpa.", "255.255.255.255"),
    ("0.0.0.0.in-addr.arpa.", "0.0.0.0"),
    ("256.0.96.10.in-addr.arpa.", None),
    ("01.0.96.10.in-addr.arpa.", None),  # leading zero
    ("a.0.96.10.in-addr.arpa.", None),
    ("-1.0.96.10.in-addr.arpa.", None),
    ("1.1.0.96.10.in-addr.arpa.", None),  # five labels
    ("0.96.10.in-addr.arpa.", None),  # partial
    ("in-addr.arpa.", None),
    ("1.0.96.10.in-addr.arpa.example.", None),
    ("..96.10.in-addr.arpa.", None),
    ("c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.", "fd00:10:244::c"),
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.", "::1"),
    ("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "2001:db8::"),
    ("g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.", None),
    ("10." + "0." * 31 + "ip6.arpa.", None),  # a two-digit label
    ("0." * 31 + "ip6.arpa.", None),  # 31 nibbles
    ("0." * 33 + "ip6.arpa.", None),  # 33 nibbles
    ("ip6.arpa.", None),
    ("api.prod.svc.cluster.local.", None),
    (r"1\.0.96.10.in-addr.arpa.", None),  # three labels, one of them `1.0`
    (r"1.0.96.10\.in-addr.arpa.", None),  # not under in-addr.arpa.
    (r"1.0.96.1\0.in-addr.arpa.", None),
    ("0." * 31 + r"0\.ip6.arpa.", None),
]


@pytest.mark.parametrize(("name", "want"), REVERSE_CASES, ids=[n for n, _ in REVERSE_CASES])
def test_reverse_address(name: str, want: str | None) -> None:
    assert reverse_address(name) == want


def test_reverse_address_round_trips_with_ipaddress() -> None:
    for text in ("10.244.3.12", "192.0.2.255", "fd00:10:244::c", "2001:db8::1", "::"):
        assert reverse_address(ipaddress.ip_address(text).reverse_pointer + ".") == text


def test_is_reverse() -> None:
    assert is_reverse("in-addr.arpa.")
    assert is_reverse("1.0.96.10.in-addr.arpa.")
    assert is_reverse("ip6.arpa.")
    assert is_reverse("x.ip6.arpa.")
    assert not is_reverse("notin-addr.arpa.")
    assert not is_reverse("cluster.local.")
    assert not is_reverse("arpa.")
    assert not is_reverse(r"x\.in-addr.arpa.")  # the label `x.in-addr` under arpa.
    assert is_reverse(r"x\.y.in-addr.arpa.")


POD_CASES: list[tuple[str, tuple[str, int] | None]] = [
    ("10-244-1-30", ("10.244.1.30", 4)),
    ("0-0-0-0", ("0.0.0.0", 4)),
    ("255-255-255-255", ("255.255.255.255", 4)),
    ("010-244-001-030", None),  # leading zeros do not parse
    ("10-244-1-300", None),
    ("1-2-3-", None),
    ("a-b-c-d", None),
    ("ip-10-244-1-30", None),  # four dashes: an IPv6 attempt that fails
    ("blah", None),
    ("", None),
    ("fd00-10-244--1e", ("fd00:10:244::1e", 6)),
    ("FD00-10-244--1E", ("fd00:10:244::1e", 6)),
    ("--1", ("::1", 6)),
    ("2001-db8--0", ("2001:db8::", 6)),
    ("1-2-3-4-5-6-7-8", ("1:2:3:4:5:6:7:8", 6)),
    ("10--244-1-30", ("10::244:1:30", 6)),  # "--" forces the IPv6 reading
    ("fe80--1%eth0", None),  # no zone index
    ("fd00-10-244--1e-", None),
    ("g--1", None),
]


@pytest.mark.parametrize(("label", "want"), POD_CASES, ids=[repr(lbl) for lbl, _ in POD_CASES])
def test_pod_address(label: str, want: tuple[str, int] | None) -> None:
    assert pod_address(label) == want


DASHED_CASES = [
    ("10.244.3.12", "10-244-3-12"),
    ("fd00:10:244::c", "fd00-10-244--c"),
    ("2001:db8::", "2001-db8--0"),
    ("::1", "--1"),
    ("::", "--0"),
]


@pytest.mark.parametrize(("ip", "want"), DASHED_CASES)
def test_dashed_address(ip: str, want: str) -> None:
    assert dashed_address(ip) == want


@pytest.mark.parametrize("ip", ["10.244.3.12", "fd00:10:244::c", "2001:db8::1", "1:2:3:4:5:6:7:8"])
def test_dashed_addresses_read_back_as_pod_labels(ip: str) -> None:
    found = pod_address(dashed_address(ip))
    assert found is not None and found[0] == ip


LABEL = st.text(
    alphabet=st.sampled_from("abcdefxyz0123456789-_*.:%AZ\\"), min_size=0, max_size=20
) | st.sampled_from(
    [
        "svc",
        "pod",
        "dns",
        "ns",
        "dns-version",
        "in-addr",
        "ip6",
        "arpa",
        "1",
        "255",
        "256",
        "f",
        "_tcp",
        "--",
    ]
)


@given(
    labels=st.lists(LABEL, max_size=40),
    zone=st.sampled_from(["cluster.local.", ".", "in-addr.arpa.", "ip6.arpa.", "svc."]),
)
def test_parse_never_raises(labels: list[str], zone: str) -> None:
    name = ".".join([*labels, zone]) if zone != "." else ".".join(labels) + "."
    name = name.lower()
    if not (name == zone or name.endswith("." + zone) or zone == "."):
        return
    got = parse(name, zone)
    assert isinstance(got.kind, NameKind)
    if got.kind is NameKind.REVERSE:
        assert ipaddress.ip_address(got.address).compressed == got.address
    assert reverse_address(name) is None or is_reverse(name)


@given(label=LABEL)
def test_pod_address_never_raises_and_is_canonical(label: str) -> None:
    found = pod_address(label)
    if found is not None:
        ip = ipaddress.ip_address(found[0])
        assert ip.compressed == found[0]
        assert ip.version == found[1]
