"""acl: setup (CoreDNS's grammar and errors), first-match decisions, the EDE replies, metrics."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from dnslib import DNSRecord

from clusterdns.chain.order import ORDER
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import CorefileErrors
from clusterdns.plugins import SETUP
from clusterdns.plugins.acl import NAME, SPEC, Acl, AclConfig, Action, Policy, Rule
from clusterdns.plugins.acl.handler import client_ip
from tests.dnstest import (
    TIMEOUT_S,
    build_config,
    first_block,
    make_request,
    running_server,
    serve,
    udp_replies_before_probe,
)

# -- setup -----------------------------------------------------------------------------------


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    name: str
    body: str
    want: AclConfig | None = None
    error: str = ""
    keys: str = "example.org"

    def corefile(self) -> str:
        return f"{self.keys} {{\n{self.body}\n    whoami\n}}\n"


SETUP_CASES = [
    SetupCase(
        name="no block: a rule that decides nothing",
        body="    acl",
        want=AclConfig(rules=(Rule(zones=("example.org.",), policies=()),)),
    ),
    SetupCase(
        name="bare actions match everything",
        body="    acl {\n        allow\n        block\n    }",
        want=AclConfig(
            rules=(
                Rule(
                    zones=("example.org.",),
                    policies=(Policy(action=Action.ALLOW), Policy(action=Action.BLOCK)),
                ),
            )
        ),
    ),
    SetupCase(
        name="types and nets, single addresses widened, host bits masked",
        body="    acl a.example.org {\n        filter type A AAAA net 10.1.2.3 192.168.1.7/24 ::1\n"
        "    }",
        want=AclConfig(
            rules=(
                Rule(
                    zones=("a.example.org.",),
                    policies=(
                        Policy(
                            action=Action.FILTER,
                            qtypes=frozenset({1, 28}),
                            nets=(net("10.1.2.3/32"), net("192.168.1.0/24"), net("::1/128")),
                        ),
                    ),
                ),
            )
        ),
    ),
    SetupCase(
        name="star means all, sections in any order and case",
        body="    acl {\n        DROP NET * TYPE *\n    }",
        want=AclConfig(
            rules=(Rule(zones=("example.org.",), policies=(Policy(action=Action.DROP),)),)
        ),
    ),
    SetupCase(
        name="zones normalised, CIDR zones become reverse zones",
        body="    acl Example.COM:53 10.0.0.0/24 {\n        block type ANY\n    }",
        want=AclConfig(
            rules=(
                Rule(
                    zones=("example.com.", "0.0.10.in-addr.arpa."),
                    policies=(Policy(action=Action.BLOCK, qtypes=frozenset({255})),),
                ),
            )
        ),
    ),
    SetupCase(
        name="several lines are several rules",
        body="    acl {\n        allow net 10.0.0.0/8\n    }\n    acl {\n        block\n    }",
        want=AclConfig(
            rules=(
                Rule(
                    zones=("example.org.",),
                    policies=(Policy(action=Action.ALLOW, nets=(net("10.0.0.0/8"),)),),
                ),
                Rule(zones=("example.org.",), policies=(Policy(action=Action.BLOCK),)),
            )
        ),
    ),
    SetupCase(
        name="unknown action",
        body="    acl {\n        deny\n    }",
        error='Corefile:3: acl: unexpected token "deny"; '
        "expect 'allow', 'block', 'filter' or 'drop'",
    ),
    SetupCase(
        name="unknown section",
        body="    acl {\n        block from 10.0.0.0/8\n    }",
        error="Corefile:3: acl: unexpected token \"from\"; expect 'type | net'",
    ),
    SetupCase(
        name="empty section",
        body="    acl {\n        block type net 10.0.0.0/8\n    }",
        error='Corefile:3: acl: no token specified in "type" section',
    ),
    SetupCase(
        name="query types are upper case",
        body="    acl {\n        block type a\n    }",
        error='Corefile:3: acl: unexpected token "a"; expect legal QTYPE',
    ),
    SetupCase(
        name="bad network",
        body="    acl {\n        block net 10.0.0.300\n    }",
        error='Corefile:3: acl: illegal CIDR notation "10.0.0.300/32"',
    ),
    SetupCase(
        name="bad zone",
        body="    acl a..b {\n    }",
        error="Corefile:2: acl: zone is not a valid domain name: a..b",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.name)
def test_setup(case: SetupCase) -> None:
    if case.want is None:
        with pytest.raises(CorefileErrors) as exc:
            build_config(case.corefile())
        assert str(exc.value) == case.error
        return
    block = build_config(case.corefile()).blocks[0]
    assert isinstance(block.head, Acl)
    assert AclConfig(rules=block.head.rules) == case.want


def test_registered_in_order_and_never_replayed() -> None:
    assert SETUP[NAME] is SPEC
    assert ORDER.index("acl") < ORDER.index("cache") < ORDER.index("whoami")
    assert not SPEC.replay_safe
    corefile = ". {\n    acl {\n        allow\n    }\n    whoami\n}\n"
    assert not build_config(corefile).blocks[0].fastpath


# -- decisions -------------------------------------------------------------------------------

RULES = """example.org {
    acl {
        allow net 192.168.1.0/24
        block net 192.168.0.0/16
        filter type AAAA net 10.0.0.0/8
        drop type TXT net 10.0.0.0/8 2001:db8::/32
    }
    acl b.example.org {
        block type MX
    }
    whoami
}
"""


@dataclass(frozen=True, kw_only=True)
class Decision:
    client: str
    qtype: str
    outcome: str
    """allow | block | filter | drop"""
    qname: str = "a.example.org."


DECISIONS = [
    Decision(client="192.168.1.9", qtype="A", outcome="allow"),
    Decision(client="192.168.2.9", qtype="A", outcome="block"),
    # An allow ends the search: the MX rule for b.example.org is not looked at.
    Decision(client="192.168.1.9", qtype="MX", qname="b.example.org.", outcome="allow"),
    Decision(client="10.1.1.1", qtype="AAAA", outcome="filter"),
    Decision(client="10.1.1.1", qtype="A", outcome="allow"),
    Decision(client="10.1.1.1", qtype="TXT", outcome="drop"),
    Decision(client="2001:db8::5", qtype="TXT", outcome="drop"),
    Decision(client="2001:db9::5", qtype="TXT", outcome="allow"),
    # No policy of the first rule matched: the second rule decides.
    Decision(client="172.16.0.1", qtype="MX", qname="x.b.example.org.", outcome="block"),
    Decision(client="172.16.0.1", qtype="MX", outcome="allow"),
    # IPv4-mapped IPv6 sources match IPv4 networks.
    Decision(client="::ffff:192.168.2.9", qtype="A", outcome="block"),
]


@pytest.mark.parametrize("case", DECISIONS, ids=lambda c: f"{c.client} {c.qtype} {c.qname}")
async def test_decision(case: Decision) -> None:
    block = first_block(RULES)
    req = make_request(case.qname, case.qtype, remote=(case.client, 5353))
    code, w = await serve(block, req)
    assert code == rc.NOERROR
    reply = w.reply()
    if case.outcome == "drop":
        assert reply is None and not w.written
        return
    assert reply is not None
    if case.outcome == "allow":
        assert w.plugin == "whoami"
        return
    assert w.plugin == NAME
    assert reply.header.rcode == (rc.REFUSED if case.outcome == "block" else rc.NOERROR)


# -- replies ---------------------------------------------------------------------------------

BLOCK_ALL = "example.org {\n    acl {\n        block\n    }\n    whoami\n}\n"
FILTER_ALL = "example.org {\n    acl {\n        filter\n    }\n    whoami\n}\n"


def opt_of(reply: DNSRecord) -> tuple[int, int, list[tuple[int, bytes]]]:
    """(udp size, ttl field, options) of the reply's only OPT record."""
    (opt,) = [r for r in reply.ar if r.rtype == 41]
    return int(opt.rclass), int(opt.ttl), [(int(o.code), bytes(o.data)) for o in opt.rdata]


@pytest.mark.parametrize(
    ("corefile", "rcode", "info"), [(BLOCK_ALL, rc.REFUSED, 15), (FILTER_ALL, rc.NOERROR, 17)]
)
async def test_reply_without_edns_gets_its_own_opt(corefile: str, rcode: int, info: int) -> None:
    req = make_request("A.Example.org.", "A")
    _, w = await serve(first_block(corefile), req)
    reply = w.reply()
    assert reply is not None
    assert reply.header.rcode == rcode and not reply.header.aa and reply.header.rd
    assert str(reply.q.qname) == "A.Example.org." and not reply.rr and not reply.auth
    assert opt_of(reply) == (4096, 0x8000, [(15, info.to_bytes(2, "big"))])


@pytest.mark.parametrize("corefile", [BLOCK_ALL, FILTER_ALL])
async def test_reply_to_edns_query_mirrors_size_and_keeps_do(corefile: str) -> None:
    req = make_request("a.example.org.", "A", edns_size=1232, do=True)
    _, w = await serve(first_block(corefile), req)
    reply = w.reply()
    assert reply is not None
    size, ttl, options = opt_of(reply)
    assert size == 1232 and ttl & 0x8000 and [c for c, _ in options] == [15]


async def test_reply_to_edns_query_without_do_keeps_do() -> None:
    req = make_request("a.example.org.", "A", edns_size=1232, do=False)
    _, w = await serve(first_block(BLOCK_ALL), req)
    reply = w.reply()
    assert reply is not None
    assert opt_of(reply)[1] & 0x8000


def test_client_address_forms() -> None:
    assert client_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert client_ip("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert client_ip("not-an-address") is None


async def test_outside_the_zones_everything_is_allowed() -> None:
    corefile = ". {\n    acl example.org {\n        block\n    }\n    whoami\n}\n"
    block = first_block(corefile)
    _, w = await serve(block, make_request("example.com.", "A"))
    assert w.plugin == "whoami"
    _, w = await serve(block, make_request("www.Example.ORG.", "A"))
    assert w.plugin == NAME


async def test_metrics_by_action() -> None:
    config = build_config(RULES)
    block = config.blocks[0]
    metrics = config.process.metrics
    for client, qtype in [
        ("192.168.1.9", "A"),
        ("192.168.2.9", "A"),
        ("192.168.2.9", "A"),
        ("10.1.1.1", "AAAA"),
        ("10.1.1.1", "TXT"),
    ]:
        await serve(block, make_request("a.example.org.", qtype, remote=(client, 1)))
    text = metrics.exposition().decode()
    server = 'server="dns://:53"'
    assert f'coredns_acl_allowed_requests_total{{{server},view=""}} 1.0' in text
    zone = f'{server},view="",zone="example.org."'
    assert f"coredns_acl_blocked_requests_total{{{zone}}} 2.0" in text
    assert f"coredns_acl_filtered_requests_total{{{zone}}} 1.0" in text
    assert f"coredns_acl_dropped_requests_total{{{zone}}} 1.0" in text


# -- through the real server -----------------------------------------------------------------


async def test_served_over_udp_and_tcp() -> None:
    corefile = """.:0 {
    acl {
        drop type TXT
        block type MX net 127.0.0.0/8
        filter type AAAA
    }
    whoami
}
"""
    async with running_server(corefile) as server:
        port = server.port()
        mx = dns.message.make_query("example.org.", "MX")
        r = await dns.asyncquery.udp(mx, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.REFUSED and r.edns == 0 and r.ednsflags & dns.flags.DO
        assert [(o.otype, o.code) for o in r.options if isinstance(o, dns.edns.EDEOption)] == [
            (dns.edns.OptionType.EDE, dns.edns.EDECode.BLOCKED)
        ]
        r = await dns.asyncquery.tcp(mx, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.REFUSED
        aaaa = dns.message.make_query("example.org.", "AAAA", use_edns=0, payload=1400)
        r = await dns.asyncquery.udp(aaaa, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.payload == 1400
        assert [o.code for o in r.options if isinstance(o, dns.edns.EDEOption)] == [
            dns.edns.EDECode.FILTERED
        ]
        # A dropped query gets nothing: the probe sent after it is the first reply to arrive.
        txt = DNSRecord.question("example.org.", "TXT").pack()
        assert await udp_replies_before_probe(port, txt) == []
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for query in (txt, DNSRecord.question("x.example.", "A").pack()):
            writer.write(len(query).to_bytes(2, "big") + query)
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TIMEOUT_S), "big")
        reply = await reader.readexactly(size)
        writer.close()
        assert DNSRecord.parse(reply).q.qtype == 1  # the TXT query got no reply over TCP either
        dropped = server.config.process.metrics.exposition().decode()
        assert "coredns_acl_dropped_requests_total{" in dropped
