from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import psutil
import pytest

from clusterdns.chain.order import DIRECTIVES
from clusterdns.corefile import parse
from clusterdns.errors import CorefileError, CorefileErrors
from clusterdns.plugins import SETUP
from clusterdns.plugins import bind as bind_plugin
from clusterdns.plugins.bind import (
    NAME,
    SPEC,
    BindConfig,
    InterfaceTable,
    expand,
    interface_addresses,
    interface_table,
)
from clusterdns.plugins.bind import parse as parse_bind
from tests.dnstest import build_config, first_block

FAKE: InterfaceTable = {
    "lo": ["127.0.0.1", "::1"],
    "eth0": ["10.0.0.5", "2001:db8::5", "fe80::1", "02:fc:00:00:00:01"],
    "eth1": ["192.168.1.10", "fe80::2%eth1"],
    "down0": [],
}


def parse_lines(body: str, interfaces: InterfaceTable = FAKE) -> BindConfig:
    """Parse the `bind` lines of `. {\\n<body>\\n}` against a fake interface table."""
    sb = parse(f". {{\n{body}\n}}\n", "Corefile", DIRECTIVES)[0]
    return parse_bind(sb.lines_of(NAME), interfaces)


# -- interface expansion (pure, fake table) --------------------------------------------------


@pytest.mark.parametrize(
    ("word", "want"),
    [
        ("lo", ["127.0.0.1", "::1"]),
        # Link-local IPv6 gets the interface as scope; a non-address entry is skipped.
        ("eth0", ["10.0.0.5", "2001:db8::5", "fe80::1%eth0"]),
        # A scope already present is kept, not doubled.
        ("eth1", ["192.168.1.10", "fe80::2%eth1"]),
        ("down0", []),
        ("127.0.0.1", ["127.0.0.1"]),
        ("0:0:0::1", ["::1"]),
        ("2001:DB8::0:5", ["2001:db8::5"]),
        ("fe80::7%eth0", ["fe80::7%eth0"]),
        ("eth9", None),
        ("localhost", None),
        ("256.0.0.1", None),
        ("10.0.0.0/8", None),
        ("", None),
    ],
)
def test_expand(word: str, want: list[str] | None) -> None:
    assert expand(word, FAKE) == want


def test_interface_addresses_unknown_interface() -> None:
    assert interface_addresses("eth9", FAKE) is None
    assert interface_addresses("eth0", {}) is None


def test_interface_name_wins_over_address() -> None:
    table: InterfaceTable = {"::1": ["10.1.1.1"]}
    assert expand("::1", table) == ["10.1.1.1"]


# -- parse: valid (fake table) ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ParseCase:
    body: str
    addresses: Sequence[str] = ()
    error: str | None = None


VALID = [
    ParseCase(body="bind 127.0.0.1", addresses=["127.0.0.1"]),
    ParseCase(body="bind 127.0.0.1 ::1", addresses=["127.0.0.1", "::1"]),
    ParseCase(body="bind eth0", addresses=["10.0.0.5", "2001:db8::5", "fe80::1%eth0"]),
    ParseCase(body="bind eth0 {\n  except fe80::1%eth0\n}", addresses=["10.0.0.5", "2001:db8::5"]),
    ParseCase(
        body="bind eth0 eth1 {\n  except eth1 2001:db8::5\n}",
        addresses=["10.0.0.5", "fe80::1%eth0"],
    ),
    # Several except lines add up.
    ParseCase(
        body="bind eth0 {\n  except 10.0.0.5\n  except 2001:db8::5\n}",
        addresses=["fe80::1%eth0"],
    ),
    # except compares canonical forms.
    ParseCase(body="bind lo {\n  except 0::1\n}", addresses=["127.0.0.1"]),
    # Excluding an address that is not listed changes nothing.
    ParseCase(body="bind 127.0.0.1 {\n  except 10.9.9.9\n}", addresses=["127.0.0.1"]),
    # Several lines add up, in order.
    ParseCase(
        body="bind 127.0.0.1\nbind eth1",
        addresses=["127.0.0.1", "192.168.1.10", "fe80::2%eth1"],
    ),
    # except applies to its own line only.
    ParseCase(
        body="bind lo\nbind eth1 {\n  except 127.0.0.1 192.168.1.10\n}",
        addresses=["127.0.0.1", "::1", "fe80::2%eth1"],
    ),
    # Duplicates (also across lines and spellings) are listed once, first position kept.
    ParseCase(body="bind 127.0.0.1 lo\nbind 127.0.0.1 0::1", addresses=["127.0.0.1", "::1"]),
    # An interface without addresses contributes nothing.
    ParseCase(body="bind down0 10.0.0.5", addresses=["10.0.0.5"]),
]

INVALID = [
    ParseCase(body="bind", error="Corefile:2: bind: expected at least 1 argument, got 0"),
    ParseCase(
        body="bind localhost",
        error="Corefile:2: bind: not a valid IP address or interface name: 'localhost'",
    ),
    ParseCase(
        body="bind 127.0.0.1 eth9",
        error="Corefile:2: bind: not a valid IP address or interface name: 'eth9'",
    ),
    ParseCase(
        body="bind 127.0.0.1\nbind 10.0.0.256",
        error="Corefile:3: bind: not a valid IP address or interface name: '10.0.0.256'",
    ),
    ParseCase(
        body="bind 127.0.0.1 {\n  except\n}",
        error="Corefile:3: bind: except: expected at least 1 argument, got 0",
    ),
    ParseCase(
        body="bind 127.0.0.1 {\n  except nowhere\n}",
        error="Corefile:3: bind: not a valid IP address or interface name: 'nowhere'",
    ),
    ParseCase(
        body="bind 127.0.0.1 {\n  interface eth0\n}",
        error="Corefile:3: bind: unknown property 'interface'",
    ),
    ParseCase(
        body="bind 127.0.0.1 {\n  except 10.0.0.5 {\n  }\n}",
        error="Corefile:3: bind: except takes no block",
    ),
    ParseCase(
        body="bind lo {\n  except lo\n}",
        error="Corefile:2: bind: no address left to listen on "
        "(all excluded, or interfaces without any)",
    ),
    ParseCase(
        body="bind down0",
        error="Corefile:2: bind: no address left to listen on "
        "(all excluded, or interfaces without any)",
    ),
    ParseCase(
        body="bind 127.0.0.1 {\n  except 127.0.0.1\n}\nbind eth1 {\n  except eth1\n}",
        error="Corefile:2: bind: no address left to listen on "
        "(all excluded, or interfaces without any)",
    ),
]


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.body)
def test_parse_valid(case: ParseCase) -> None:
    assert parse_lines(case.body) == BindConfig(addresses=tuple(case.addresses))


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.body)
def test_parse_invalid(case: ParseCase) -> None:
    with pytest.raises(CorefileError) as exc:
        parse_lines(case.body)
    assert str(exc.value) == case.error
    assert exc.value.directive == "bind"


# -- setup with the real interface table -----------------------------------------------------


def real_lo() -> list[str]:
    addrs = interface_table().get("lo")
    if addrs is None:
        pytest.skip("no interface named lo on this host")
    return addrs


def test_interface_table_has_only_ip_addresses() -> None:
    table = interface_table()
    assert set(table) == set(psutil.net_if_addrs())
    for name in table:
        expanded = interface_addresses(name, table)
        assert expanded is not None
        assert len(expanded) == len(table[name])


def test_interface_table_when_the_host_refuses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> dict[str, list[object]]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(psutil, "net_if_addrs", refuse)
    assert interface_table() == {}
    assert "cannot list network interfaces" in caplog.text
    # Plain addresses still work; interface names are then unknown.
    assert build_config(". {\n    bind 127.0.0.1\n    whoami\n}\n").blocks[0].settings.listen == [
        "127.0.0.1"
    ]
    with pytest.raises(CorefileErrors, match="interface name: 'lo'"):
        build_config(". {\n    bind lo\n    whoami\n}\n")


def test_setup_sets_listen_and_adds_no_handler() -> None:
    config = build_config(". {\n    bind 127.0.0.1 ::1\n    whoami\n}\n")
    block = config.blocks[0]
    assert block.settings.listen == ["127.0.0.1", "::1"]
    assert block.plugins == ("whoami",)
    assert set(config.listeners) == {("dns", "127.0.0.1", 53), ("dns", "::1", 53)}


def test_without_bind_the_block_listens_on_the_wildcard() -> None:
    config = build_config(". {\n    whoami\n}\n")
    assert config.blocks[0].settings.listen == []
    assert set(config.listeners) == {("dns", "", 53)}


def test_setup_with_the_real_lo_interface() -> None:
    addrs = real_lo()
    assert "127.0.0.1" in addrs
    want = ["127.0.0.1"] + (["::1"] if "::1" in addrs else [])
    block = first_block(". {\n    bind lo\n    whoami\n}\n")
    assert sorted(block.settings.listen) == sorted(want)
    block = first_block(". {\n    bind lo {\n        except ::1\n    }\n    whoami\n}\n")
    assert block.settings.listen == ["127.0.0.1"]


def test_setup_errors_name_file_and_line() -> None:
    with pytest.raises(CorefileErrors) as exc:
        build_config(". {\n    whoami\n    bind no-such-iface0\n}\n")
    assert str(exc.value) == (
        "Corefile:3: bind: not a valid IP address or interface name: 'no-such-iface0'"
    )


def test_registered() -> None:
    assert SETUP[NAME] is SPEC


# -- README ----------------------------------------------------------------------------------


def test_readme_sections_and_examples() -> None:
    real_lo()
    doc = bind_plugin.__doc__
    assert doc is not None
    for section in ("# bind", "## Name", "## Description", "## Syntax", "## Examples"):
        assert f"\n{section}\n" in f"\n{doc}"
    corefiles = re.findall(r"~~~ corefile\n(.*?)~~~", doc, flags=re.S)
    assert corefiles
    for text in corefiles:
        for block in build_config(text).blocks:
            assert block.settings.listen
            assert "127.0.0.1" in block.settings.listen
