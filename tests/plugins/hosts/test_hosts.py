from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from clusterdns.chain.build import Block, build
from clusterdns.chain.order import DIRECTIVES, ORDER
from clusterdns.chain.request import Request
from clusterdns.chain.setup import PluginSpec
from clusterdns.corefile import parse as parse_corefile
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.fallthrough import Fallthrough
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.plugins import SETUP
from clusterdns.plugins import hosts as hosts_plugin
from clusterdns.plugins.hosts import NAME, SPEC, Hosts, HostsConfig, metrics_for
from clusterdns.plugins.hosts.hostsfile import (
    HostsFile,
    address_from_reverse,
    parse_hosts,
    parse_ip,
    wildcard_of,
)
from tests.dnstest import LOCAL, REMOTE, Case, build_config, make_request, new_process, serve

# -- fixtures --------------------------------------------------------------------------------

HOSTS_FILE = """\
# a comment line
127.0.0.1   localhost
10.0.0.1    www.example.org www alias.example.org   # trailing comment
10.0.0.2    Mixed.Example.ORG
fd00::1     www.example.org
fe80::1%eth0 link.example.org
10.0.0.3    *.apps.example.org
fd00::3     *.apps.example.org
10.0.0.4    api.apps.example.org
10.0.0.5    other.example.net
::ffff:10.0.0.7 mapped.example.org
not-an-address broken.example.org
300.0.0.1   bad.example.org
10.0.0.6
"""

WHOAMI_EXTRA = (
    "{owner} 0 IN A 10.240.0.1",
    "_udp.{owner} 0 IN SRV 0 0 40212 .",
)


def whoami_extra(owner: str) -> list[str]:
    return [line.format(owner=owner) for line in WHOAMI_EXTRA]


def ptr_name(addr: str) -> str:
    return ip_address(addr).reverse_pointer + "."


CHAINS = {
    # No fallthrough: unknown names inside the zones are SERVFAIL.
    "plain": """example.org example.net {{
    hosts {path} example.org {{
        192.0.2.1 inline.example.org
        10.0.0.1 inline.example.org
        ttl 300
    }}
    whoami
}}
""",
    # Fallthrough limited to example.org.
    "fall": """example.org example.net {{
    hosts {path} {{
        192.0.2.9 inline.example.net
        fallthrough example.org
    }}
    whoami
}}
""",
    # Fallthrough for every zone, and for unsupported types too.
    "unsupported": """example.org {{
    hosts {path} {{
        fallthrough
        fallthrough_unsupported
    }}
    whoami
}}
""",
    "no_reverse": """example.org {{
    hosts {path} {{
        no_reverse
    }}
    whoami
}}
""",
}


@pytest.fixture
def hosts_path(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS_FILE)
    return path


@pytest.fixture
def chains(hosts_path: Path) -> dict[str, Block]:
    return {
        name: build_config(text.format(path=hosts_path)).blocks[0] for name, text in CHAINS.items()
    }


def hosts_of(block: Block) -> Hosts:
    assert isinstance(block.head, Hosts)
    return block.head


# -- setup -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    config: HostsConfig | None = None
    error: str | None = None


SETUP_CASES = [
    SetupCase(corefile=". {\n    hosts\n}\n", config=HostsConfig(zones=(".",))),
    SetupCase(
        corefile="example.org example.net:53 {\n    hosts /nonexistent/hosts\n}\n",
        config=HostsConfig(path="/nonexistent/hosts", zones=("example.org.", "example.net.")),
    ),
    SetupCase(
        corefile="10.0.0.0/24 {\n    hosts\n}\n",
        config=HostsConfig(zones=("0.0.10.in-addr.arpa.",)),
    ),
    SetupCase(
        corefile=""". {
    hosts /nonexistent/hosts Example.ORG 10.0.0.0/8 {
        ttl 60
        no_reverse
        reload 1m30s
        fallthrough example.org in-addr.arpa
        fallthrough_unsupported
    }
}
""",
        config=HostsConfig(
            path="/nonexistent/hosts",
            zones=("example.org.", "10.in-addr.arpa."),
            ttl_s=60,
            auto_reverse=False,
            reload_s=90.0,
            fallthrough=Fallthrough(("example.org.", "in-addr.arpa.")),
            fallthrough_unsupported=True,
        ),
    ),
    # Inline lines before `fallthrough`; options still recognised after it.
    SetupCase(
        corefile=""". {
    hosts {
        10.0.0.1 a.example.org b.example.org
        fd00::1 a.example.org
        fallthrough
        ttl 1
        reload 0
    }
}
""",
        config=HostsConfig(
            zones=(".",),
            inline=("10.0.0.1 a.example.org b.example.org", "fd00::1 a.example.org"),
            ttl_s=1,
            reload_s=0.0,
            fallthrough=Fallthrough((".",)),
        ),
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        ttl 65535\n    }\n}\n",
        config=HostsConfig(zones=(".",), ttl_s=65535),
    ),
    # Errors: each names its line.
    SetupCase(
        corefile=". {\n    hosts {\n        ttl\n    }\n}\n",
        error="Corefile:3: hosts: ttl needs a time in second",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        ttl 5s\n    }\n}\n",
        error="Corefile:3: hosts: ttl needs a number of second",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        ttl 0\n    }\n}\n",
        error="Corefile:3: hosts: ttl provided is invalid",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        ttl 65536\n    }\n}\n",
        error="Corefile:3: hosts: ttl provided is invalid",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        ttl -5\n    }\n}\n",
        error="Corefile:3: hosts: ttl provided is invalid",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        reload\n    }\n}\n",
        error="Corefile:3: hosts: reload needs a duration (zero seconds to disable)",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        reload 5\n    }\n}\n",
        error="Corefile:3: hosts: invalid duration for reload '5'",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        reload -1s\n    }\n}\n",
        error="Corefile:3: hosts: invalid negative duration for reload '-1s'",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        fallthrough\n        10.0.0.1 a.example.org\n    }\n}",
        error="Corefile:4: hosts: unknown property '10.0.0.1'",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        fallthrough\n        no_such_option\n    }\n}\n",
        error="Corefile:4: hosts: unknown property 'no_such_option'",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        fallthrough_unsupported\n    }\n}\n",
        error="Corefile:3: hosts: fallthrough_unsupported requires fallthrough",
    ),
    SetupCase(
        corefile=". {\n  hosts {\n    fallthrough\n    fallthrough_unsupported x\n  }\n}\n",
        error="Corefile:4: hosts: fallthrough_unsupported: expected no arguments, got 1",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        no_reverse yes\n    }\n}\n",
        error="Corefile:3: hosts: no_reverse: expected no arguments, got 1",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        fallthrough a..b\n    }\n}\n",
        error="Corefile:3: hosts: zone is not a valid domain name: a..b",
    ),
    SetupCase(
        corefile=". {\n    hosts /etc/hosts example.org a..b\n}\n",
        error="Corefile:2: hosts: zone is not a valid domain name: a..b",
    ),
    SetupCase(
        corefile=". {\n    hosts {\n        10.0.0.1 a.example.org {\n        }\n    }\n}\n",
        error="Corefile:3: hosts: 10.0.0.1 takes no block",
    ),
    SetupCase(
        corefile=". {\n    hosts\n    hosts /etc/hosts\n}\n",
        error="Corefile:3: hosts: this plugin can only be used once per Server Block",
    ),
    # No file name holds a NUL byte: an error at its line, not a ValueError from the OS layer.
    SetupCase(
        corefile=". {\n    hosts /etc/\0hosts\n}\n",
        error="Corefile:2: hosts: invalid file name '/etc/\\x00hosts': it holds a NUL byte",
    ),
    SetupCase(
        corefile=". {\n    hosts \0 example.org {\n        reload 0\n    }\n}\n",
        error="Corefile:2: hosts: invalid file name '\\x00': it holds a NUL byte",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.error or c.corefile)
def test_setup(case: SetupCase) -> None:
    if case.error is None:
        block = build_config(case.corefile).blocks[0]
        assert block.plugins == ("hosts",)
        assert hosts_of(block).config == case.config
    else:
        with pytest.raises(CorefileErrors) as exc:
            build_config(case.corefile)
        assert str(exc.value) == case.error


def test_setup_unreadable_path_is_an_error(tmp_path: Path) -> None:
    # A path through a regular file cannot be stat'ed: not "missing", so an error (as CoreDNS).
    regular = tmp_path / "file"
    regular.write_text("")
    path = regular / "hosts"
    with pytest.raises(CorefileErrors) as exc:
        build_config(f". {{\n    hosts {path}\n}}\n")
    assert (
        str(exc.value)
        == f"Corefile:2: hosts: unable to access hosts file '{path}': Not a directory"
    )


def test_setup_missing_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "missing"
    with caplog.at_level(logging.WARNING, logger="clusterdns.plugins.hosts"):
        block = build_config(
            f". {{\n    hosts {path} {{\n        10.0.0.1 a.example.org\n    }}\n}}\n"
        ).blocks[0]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("clusterdns.plugins.hosts", logging.WARNING, f"File does not exist: {path}")
    ]
    assert hosts_of(block).hosts.v4("a.example.org.") == (IPv4Address("10.0.0.1"),)


def test_registered_once_and_ordered() -> None:
    assert SETUP[NAME] is SPEC
    assert SPEC.once
    assert ORDER.index("hosts") < ORDER.index("kubernetes") < ORDER.index("whoami")


# -- answers ---------------------------------------------------------------------------------

AA = "qr aa rd"

ANSWER_CASES: list[tuple[str, Case]] = [
    (
        "plain",
        Case(qname="www.example.org.", answer=["www.example.org. 300 IN A 10.0.0.1"], flags=AA),
    ),
    # The query's letter case is kept in the answer.
    (
        "plain",
        Case(qname="WwW.Example.ORG.", answer=["WwW.Example.ORG. 300 IN A 10.0.0.1"], flags=AA),
    ),
    (
        "plain",
        Case(
            qname="www.example.org.",
            qtype="AAAA",
            answer=["www.example.org. 300 IN AAAA fd00::1"],
            flags=AA,
        ),
    ),
    ("plain", Case(qname="alias.example.org.", answer=["alias.example.org. 300 IN A 10.0.0.1"])),
    # Names from the file are lower-cased.
    ("plain", Case(qname="mixed.example.org.", answer=["mixed.example.org. 300 IN A 10.0.0.2"])),
    # The IPv6 zone of an address is dropped.
    (
        "plain",
        Case(
            qname="link.example.org.",
            qtype="AAAA",
            answer=["link.example.org. 300 IN AAAA fe80::1"],
        ),
    ),
    # An IPv4-mapped IPv6 address is an IPv4 entry.
    ("plain", Case(qname="mapped.example.org.", answer=["mapped.example.org. 300 IN A 10.0.0.7"])),
    # Inline entries, in the order written.
    (
        "plain",
        Case(
            qname="inline.example.org.",
            ordered=True,
            answer=[
                "inline.example.org. 300 IN A 192.0.2.1",
                "inline.example.org. 300 IN A 10.0.0.1",
            ],
        ),
    ),
    # Wildcards match exactly one label, in both families.
    (
        "plain",
        Case(
            qname="x.apps.example.org.", answer=["x.apps.example.org. 300 IN A 10.0.0.3"], flags=AA
        ),
    ),
    (
        "plain",
        Case(
            qname="X.Apps.example.org.",
            qtype="AAAA",
            answer=["X.Apps.example.org. 300 IN AAAA fd00::3"],
        ),
    ),
    # An explicit name wins over the wildcard (per address family, as CoreDNS).
    (
        "plain",
        Case(qname="api.apps.example.org.", answer=["api.apps.example.org. 300 IN A 10.0.0.4"]),
    ),
    (
        "plain",
        Case(
            qname="api.apps.example.org.",
            qtype="AAAA",
            answer=["api.apps.example.org. 300 IN AAAA fd00::3"],
        ),
    ),
    # Known name, other type: NOERROR, empty, authoritative, no SOA.
    ("plain", Case(qname="www.example.org.", qtype="MX", flags=AA)),
    ("plain", Case(qname="mixed.example.org.", qtype="AAAA", flags=AA)),
    ("plain", Case(qname="x.apps.example.org.", qtype="TXT", flags=AA)),
    # PTR: every name of the address, file then inline; answered outside the plugin's zones.
    (
        "plain",
        Case(
            qname=ptr_name("10.0.0.1"),
            qtype="PTR",
            ordered=True,
            flags=AA,
            answer=[
                f"{ptr_name('10.0.0.1')} 300 IN PTR www.example.org.",
                f"{ptr_name('10.0.0.1')} 300 IN PTR alias.example.org.",
                f"{ptr_name('10.0.0.1')} 300 IN PTR inline.example.org.",
            ],
        ),
    ),
    (
        "plain",
        Case(
            qname="2.0.0.10.IN-ADDR.arpa.",
            qtype="PTR",
            answer=["2.0.0.10.IN-ADDR.arpa. 300 IN PTR mixed.example.org."],
        ),
    ),
    (
        "plain",
        Case(
            qname=ptr_name("fd00::1"),
            qtype="PTR",
            answer=[f"{ptr_name('fd00::1')} 300 IN PTR www.example.org."],
        ),
    ),
    (
        "plain",
        Case(
            qname=ptr_name("10.0.0.7"),
            qtype="PTR",
            answer=[f"{ptr_name('10.0.0.7')} 300 IN PTR mapped.example.org."],
        ),
    ),
    # Fallthrough never applies to NODATA.
    ("fall", Case(qname="www.example.org.", qtype="MX", flags=AA)),
    ("fall", Case(qname="inline.example.net.", answer=["inline.example.net. 3600 IN A 192.0.2.9"])),
    ("unsupported", Case(qname="www.example.org.", answer=["www.example.org. 3600 IN A 10.0.0.1"])),
    (
        "unsupported",
        Case(
            qname=ptr_name("10.0.0.4"),
            qtype="PTR",
            answer=[f"{ptr_name('10.0.0.4')} 3600 IN PTR api.apps.example.org."],
        ),
    ),
    # no_reverse: forward answers stay, with the default TTL.
    ("no_reverse", Case(qname="www.example.org.", answer=["www.example.org. 3600 IN A 10.0.0.1"])),
]


@pytest.mark.parametrize(
    "chain,case", ANSWER_CASES, ids=lambda v: v if isinstance(v, str) else v.id()
)
async def test_answer(chains: dict[str, Block], chain: str, case: Case) -> None:
    code, w = await serve(chains[chain], case.request())
    case.check(w.reply())
    assert w.plugin == NAME
    assert code == rc.NOERROR


NEXT_CASES: list[tuple[str, str, str]] = [
    # Outside the plugin's zones (but inside the block): next plugin, even without fallthrough.
    ("plain", "other.example.net.", "A"),
    # PTR without an entry always goes on: a wildcard-only address, an ignored entry, a
    # partial reverse name, a name that is not a reverse name.
    ("plain", ptr_name("10.0.0.3"), "PTR"),
    ("plain", ptr_name("10.0.0.5"), "PTR"),
    ("plain", ptr_name("192.0.2.200"), "PTR"),
    ("plain", "0.10.in-addr.arpa.", "PTR"),
    ("plain", "www.example.org.", "PTR"),
    # Fallthrough in its zones.
    ("fall", "nope.example.org.", "A"),
    ("fall", "apps.example.org.", "A"),
    ("fall", "a.b.apps.example.org.", "AAAA"),
    ("fall", "nope.example.org.", "TXT"),
    ("unsupported", "nope.example.org.", "A"),
    ("unsupported", "www.example.org.", "MX"),
    ("unsupported", "www.example.org.", "TXT"),
    ("unsupported", "x.apps.example.org.", "HTTPS"),
    ("no_reverse", ptr_name("10.0.0.1"), "PTR"),
]


@pytest.mark.parametrize("chain,qname,qtype", NEXT_CASES)
async def test_next_plugin(chains: dict[str, Block], chain: str, qname: str, qtype: str) -> None:
    code, w = await serve(chains[chain], make_request(qname, qtype))
    Case(qname=qname, qtype=qtype, extra=whoami_extra(qname)).check(w.reply())
    assert w.plugin == "whoami"
    assert code == rc.NOERROR


SERVFAIL_CASES: list[tuple[str, str, str]] = [
    ("plain", "nope.example.org.", "A"),
    ("plain", "nope.example.org.", "AAAA"),
    ("plain", "nope.example.org.", "MX"),
    # The wildcard excludes its own apex and deeper names.
    ("plain", "apps.example.org.", "A"),
    ("plain", "a.b.apps.example.org.", "A"),
    # Unparsable lines and names outside the zones were skipped.
    ("plain", "broken.example.org.", "A"),
    ("plain", "bad.example.org.", "A"),
    ("plain", "localhost.example.org.", "A"),
    # Fallthrough zones limit fallthrough.
    ("fall", "nope.example.net.", "A"),
    ("no_reverse", "nope.example.org.", "A"),
]


@pytest.mark.parametrize("chain,qname,qtype", SERVFAIL_CASES)
async def test_servfail_without_writing(
    chains: dict[str, Block], chain: str, qname: str, qtype: str
) -> None:
    code, w = await serve(chains[chain], make_request(qname, qtype))
    assert code == rc.SERVFAIL
    assert not w.written
    assert w.sent == []


async def test_pass_on_without_next_plugin_is_an_error(hosts_path: Path) -> None:
    block = build_config(f"example.org {{\n    hosts {hosts_path}\n}}\n").blocks[0]
    with pytest.raises(PluginError, match=r"^plugin/hosts: no next plugin found$"):
        await serve(block, make_request(ptr_name("192.0.2.200"), "PTR"))


# -- reloading -------------------------------------------------------------------------------


def write(path: Path, text: str, mtime_s: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_s * 10**9, mtime_s * 10**9))


def inline_block(path: Path, extra: str = "") -> Block:
    return build_config(
        f"example.org {{\n    hosts {path} {{\n        10.9.0.1 inline.example.org\n{extra}"
        "    }\n    whoami\n}\n"
    ).blocks[0]


async def answer_a(block: Block, qname: str) -> list[str]:
    code, w = await serve(block, make_request(qname, "A"))
    if code == rc.SERVFAIL:
        return ["SERVFAIL"]
    reply = w.reply()
    assert reply is not None
    return [str(r.rdata) for r in reply.rr]


async def test_reload_on_change(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_000)
    block = inline_block(path)
    plugin = hosts_of(block)
    assert await answer_a(block, "a.example.org.") == ["10.0.0.1"]
    assert plugin.reload_if_changed() is False  # unchanged since setup read it

    # Same size, new mtime: re-read.
    write(path, "10.0.0.2 a.example.org\n", 1_700_000_100)
    assert plugin.reload_if_changed() is True
    assert await answer_a(block, "a.example.org.") == ["10.0.0.2"]

    # New size, same mtime: re-read.
    write(path, "10.0.0.3 a.example.org b.example.org\n", 1_700_000_100)
    assert plugin.reload_if_changed() is True
    assert await answer_a(block, "b.example.org.") == ["10.0.0.3"]

    # Same size and mtime: not re-read (the check is on stat, as CoreDNS).
    write(path, "10.0.0.4 a.example.org b.example.org\n", 1_700_000_100)
    assert plugin.reload_if_changed() is False
    assert await answer_a(block, "a.example.org.") == ["10.0.0.3"]
    assert await answer_a(block, "inline.example.org.") == ["10.9.0.1"]


async def test_deleted_file_keeps_last_entries(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_000)
    block = inline_block(path)
    plugin = hosts_of(block)
    before = plugin.hosts.file
    path.unlink()
    assert plugin.reload_if_changed() is False
    assert plugin.hosts.file is before
    assert await answer_a(block, "a.example.org.") == ["10.0.0.1"]
    assert await answer_a(block, "inline.example.org.") == ["10.9.0.1"]

    # Restored with new content: used again.
    write(path, "10.0.0.5 c.example.org\n", 1_700_000_200)
    assert plugin.reload_if_changed() is True
    assert await answer_a(block, "c.example.org.") == ["10.0.0.5"]
    assert await answer_a(block, "a.example.org.") == ["SERVFAIL"]


async def test_file_created_after_setup(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    block = inline_block(path)
    plugin = hosts_of(block)
    assert await answer_a(block, "a.example.org.") == ["SERVFAIL"]
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_000)
    assert plugin.reload_if_changed() is True
    assert await answer_a(block, "a.example.org.") == ["10.0.0.1"]


async def test_reload_swaps_the_index_whole(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_000)
    plugin = hosts_of(inline_block(path))
    old = plugin.hosts.file
    write(path, "10.0.0.2 a.example.org\n", 1_700_000_001)
    assert plugin.reload_if_changed()
    new = plugin.hosts.file
    assert new is not old
    # The old index is untouched (a query holding it sees a consistent file).
    assert old.v4("a.example.org.") == (IPv4Address("10.0.0.1"),)
    assert new.v4("a.example.org.") == (IPv4Address("10.0.0.2"),)


async def test_startup_and_shutdown_hooks(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_000)
    config = build_config(
        f"example.org {{\n    hosts {path}\n}}\n"
        f"example.net {{\n    hosts {path} {{\n        reload 0\n    }}\n}}\n"
    )
    first, second = (hosts_of(b) for b in config.blocks)
    # Setup starts nothing.
    assert not first.hosts.watching and not second.hosts.watching
    # A change between setup and start-up is picked up by the start-up hook.
    write(path, "10.0.0.2 a.example.org\n", 1_700_000_001)
    for hook in config.process.startup:
        await hook()
    assert first.hosts.watching
    assert not second.hosts.watching  # reload 0 disables the loop
    assert first.hosts.v4("a.example.org.") == (IPv4Address("10.0.0.2"),)
    for hook in reversed(config.process.shutdown):
        await hook()
    assert not first.hosts.watching
    for hook in reversed(config.process.shutdown):
        await hook()  # idempotent
    assert not first.hosts.watching


async def test_watch_loop_rereads_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_000)
    loads: list[tuple[int, float]] = []
    reloaded = asyncio.Event()

    def on_load(entries: int, mtime_s: float) -> None:
        loads.append((entries, mtime_s))
        reloaded.set()

    hosts = HostsFile(str(path), ("example.org.",), on_load=on_load)
    assert hosts.reload_if_changed()
    reloaded.clear()
    hosts.start_watching(0.001)
    try:
        write(path, "10.0.0.2 a.example.org b.example.org\n", 1_700_000_050)
        async with asyncio.timeout(5):
            await reloaded.wait()
    finally:
        await hosts.stop_watching()
    assert hosts.v4("b.example.org.") == (IPv4Address("10.0.0.2"),)
    assert loads == [(2, 1_700_000_000.0), (4, 1_700_000_050.0)]


# -- metrics ---------------------------------------------------------------------------------


async def test_metrics(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    # File: 4 forward (a v4, b v4, a v6, wildcard) + 3 reverse = 7; inline: 1 + 1 = 2.
    write(
        path,
        "10.0.0.1 a.example.org b.example.org\nfd00::1 a.example.org\n10.0.0.2 *.w.example.org\n",
        1_700_000_000,
    )
    os.utime(path, ns=(1_700_000_000_250_000_000, 1_700_000_000_250_000_000))
    config = build_config(
        f"example.org {{\n    hosts {path} {{\n        10.0.0.3 c.example.org\n    }}\n}}\n"
        f"example.net {{\n    hosts {tmp_path / 'missing'}\n}}\n"
    )
    series = metrics_for(config.process.metrics)
    assert series.entries.values == {(str(path),): 9}
    assert series.reload_timestamp.values == {(): 1_700_000_000.25}

    plugin = hosts_of(config.blocks[0])
    write(path, "10.0.0.1 a.example.org\n", 1_700_000_500)
    assert plugin.reload_if_changed()
    assert series.entries.values == {(str(path),): 4}
    assert series.reload_timestamp.values == {(): 1_700_000_500.0}

    text = config.process.metrics.exposition().decode()
    assert f'coredns_hosts_entries{{hostsfile="{path}"}} 4.0' in text
    assert "coredns_hosts_reload_timestamp_seconds 1.7000005e+09" in text
    # Registered once per process although two blocks use the plugin; no series for the missing
    # file.
    assert text.count("# TYPE coredns_hosts_entries gauge") == 1
    assert "missing" not in text


def test_metrics_no_reverse_counts_forward_only(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write(path, "10.0.0.1 a.example.org b.example.org\nfd00::1 a.example.org\n", 1_700_000_000)
    config = build_config(f"example.org {{\n    hosts {path} {{\n        no_reverse\n    }}\n}}\n")
    assert metrics_for(config.process.metrics).entries.values == {(str(path),): 3}


def test_metrics_absent_while_file_missing(tmp_path: Path) -> None:
    config = build_config(
        f". {{\n    hosts {tmp_path / 'missing'} {{\n        10.0.0.1 a.example.org\n    }}\n}}\n"
    )
    series = metrics_for(config.process.metrics)
    assert series.entries.values == {}
    assert series.reload_timestamp.values == {}


# -- the index -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,want",
    [
        ("a.example.org.", "*.example.org."),
        ("*.example.org.", "*.example.org."),
        ("example.org.", "*.org."),
        ("org.", None),
        (".", None),
        # Escaped dots and backslashes belong to the label (the query's text form).
        ("a\\.b.example.org.", "*.example.org."),
        ("a\\\\.example.org.", "*.example.org."),
        ("a\\\\\\.b.example.org.", "*.example.org."),
        ("\\255\\.x.org.", "*.org."),
        ("a\\.org.", None),
    ],
)
def test_wildcard_of(name: str, want: str | None) -> None:
    assert wildcard_of(name) == want


@pytest.mark.parametrize(
    "text,want",
    [
        ("10.0.0.1", IPv4Address("10.0.0.1")),
        ("fd00::1", IPv6Address("fd00::1")),
        ("fe80::1%eth0", IPv6Address("fe80::1")),
        ("::ffff:10.0.0.7", IPv4Address("10.0.0.7")),
        ("010.0.0.1", None),
        ("10.0.0", None),
        ("host", None),
    ],
)
def test_parse_ip(text: str, want: IPv4Address | IPv6Address | None) -> None:
    assert parse_ip(text) == want


@pytest.mark.parametrize(
    "name,want",
    [
        ("1.0.0.10.in-addr.arpa.", IPv4Address("10.0.0.1")),
        (ptr_name("fd00::1"), IPv6Address("fd00::1")),
        (ptr_name("::ffff:10.0.0.7"), IPv4Address("10.0.0.7")),
        ("0.10.in-addr.arpa.", None),
        ("in-addr.arpa.", None),
        ("1.0.ip6.arpa.", None),
        ("x.1.0.0.10.in-addr.arpa.", None),
        ("www.example.org.", None),
    ],
)
def test_address_from_reverse(name: str, want: IPv4Address | IPv6Address | None) -> None:
    assert address_from_reverse(name) == want


def test_parse_hosts_index() -> None:
    entries = parse_hosts(
        "10.0.0.1 A.example.org a.example.org. other.test\n"
        "fd00::1 a.example.org  # comment 10.0.0.9 z.example.org\n"
        "10.0.0.2 *.w.example.org\n"
        "10.0.0.3 a..example.org\n",
        ("example.org.",),
        auto_reverse=True,
    )
    assert entries.name4 == {"a.example.org.": (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.1"))}
    assert entries.name6 == {"a.example.org.": (IPv6Address("fd00::1"),)}
    assert entries.wild4 == {"*.w.example.org.": (IPv4Address("10.0.0.2"),)}
    assert entries.addr == {
        IPv4Address("10.0.0.1"): ("a.example.org.", "a.example.org."),
        IPv6Address("fd00::1"): ("a.example.org.",),
    }
    assert len(entries) == 7


# -- documentation ---------------------------------------------------------------------------

FENCE = re.compile(r"^~~~ corefile\n(.*?)^~~~$", re.M | re.S)


def _stub(name: str) -> PluginSpec:
    def setup_only(lines: object, ctx: object) -> None:
        return None

    return PluginSpec(name, setup_only)


def test_readme_examples_parse_and_set_up() -> None:
    doc = hosts_plugin.__doc__
    assert doc is not None
    for section in (
        "# hosts",
        "## Name",
        "## Description",
        "## Syntax",
        "## Examples",
        "## Metrics",
    ):
        assert f"\n{section}\n" in f"\n{doc}"
    examples = FENCE.findall(doc.split("## Examples", 1)[1].split("\n## ", 1)[0])
    assert len(examples) == 4
    # Plugins other than hosts that are not built yet are stood in for by setup-only stubs.
    specs: dict[str, PluginSpec] = {n: _stub(n) for n in ORDER}
    specs.update(SETUP)
    for text in examples:
        blocks = parse_corefile(text, "Corefile", DIRECTIVES)
        config = build(blocks, specs=specs, dns_port=53, process=new_process())
        assert "hosts" in config.blocks[0].plugins
        assert isinstance(config.blocks[0].head, Hosts)


# -- owners keep the question's bytes ----------------------------------------------------------


def odd_request(labels: tuple[bytes, ...], qtype: str = "A") -> Request:
    """A request whose question holds exactly these label bytes."""
    header = DNSHeader(id=1, rd=1)
    q = DNSRecord(header, q=DNSQuestion(DNSLabel(labels), int(getattr(QTYPE, qtype))))
    wire = bytes(q.pack())
    return Request(parse_message(wire), wire, proto="udp", remote=REMOTE, local=LOCAL)


@pytest.mark.parametrize(
    "labels",
    [
        (b"Caf\xc3\xa9", b"Example", b"ORG"),  # written caf\195\169.example.org in the file
        (b"a@b", b"example", b"org"),  # written a\@b.example.org, as CoreDNS needs it too
        (b"a.b", b"example", b"org"),  # written a\.b.example.org
    ],
)
async def test_owner_is_the_question_bytes(labels: tuple[bytes, ...]) -> None:
    """Bug `text-escapes`: the owner was rebuilt from text (IDNA-encoded, or split at dots)."""
    block = build_config(
        "example.org {\n    hosts /nonexistent/hosts {\n"
        "        192.0.2.1 caf\\195\\169.example.org a\\@b.example.org a\\.b.example.org\n"
        "    }\n}\n"
    ).blocks[0]
    code, w = await serve(block, odd_request(labels))
    assert code == rc.NOERROR
    reply = parse_message(w.sent[0])
    assert [(tuple(bytes(x) for x in r.rname.label), str(r.rdata)) for r in reply.rr] == [
        (labels, "192.0.2.1")
    ]


async def test_a_label_holding_dots_does_not_match_the_name_of_its_text() -> None:
    block = build_config(
        "example.org {\n    hosts /nonexistent/hosts {\n"
        "        192.0.2.1 a.b.example.org\n        fallthrough\n    }\n    whoami\n}\n"
    ).blocks[0]
    code, w = await serve(block, odd_request((b"a.b", b"example", b"org")))
    assert code == rc.NOERROR and w.plugin == "whoami"
