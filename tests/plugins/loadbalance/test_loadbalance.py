from __future__ import annotations

import ipaddress
import itertools
import logging
import random
from collections import Counter as Tally
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from dnslib import RR, DNSRecord

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import parse as parse_corefile
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import CorefileErrors
from clusterdns.plugins.loadbalance import (
    LoadBalance,
    LoadBalanceConfig,
    LoadBalanceWriter,
    Policy,
    RoundRobin,
    Weighted,
    WeightFile,
    parse,
    parse_weights,
    prefer_subnets,
    round_robin,
)
from clusterdns.plugins.loadbalance.weighted import WeightFileError, WeightTable
from tests.dnstest import RecordingWriter, build_config, make_request, serve


def rr(text: str) -> RR:
    (record,) = RR.fromZone(text)
    return record


def texts(records: list[RR]) -> list[str]:
    return [str(r) for r in records]


A1 = rr("www.example.org. 60 IN A 10.0.0.1")
A2 = rr("www.example.org. 60 IN A 10.0.0.2")
A3 = rr("www.example.org. 60 IN A 10.0.0.3")
A4 = rr("www.example.org. 60 IN A 10.0.0.4")
V6 = rr("www.example.org. 60 IN AAAA fd00::1")
CN1 = rr("alias.example.org. 60 IN CNAME www.example.org.")
CN2 = rr("alias2.example.org. 60 IN CNAME alias.example.org.")
MX1 = rr("example.org. 60 IN MX 10 mx1.example.org.")
MX2 = rr("example.org. 60 IN MX 20 mx2.example.org.")
TXT = rr('example.org. 60 IN TXT "hello"')
SRV = rr("_x._tcp.example.org. 60 IN SRV 0 0 80 www.example.org.")


# -- setup -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    lines: str
    config: LoadBalanceConfig | None = None
    error: str | None = None

    def corefile(self, weights: Path) -> str:
        body = self.lines.replace("WEIGHTS", str(weights))
        return "example.org {\n" + body + "    whoami\n}\n"


SETUP_CASES = [
    SetupCase(lines="    loadbalance\n", config=LoadBalanceConfig()),
    SetupCase(lines="    loadbalance round_robin\n", config=LoadBalanceConfig()),
    SetupCase(
        lines="    loadbalance round_robin {\n        prefer 10.1.0.0/16 fd00::1/8\n"
        "        prefer 192.168.1.7/24\n    }\n",
        config=LoadBalanceConfig(
            prefer=(
                ipaddress.ip_network("10.1.0.0/16"),
                ipaddress.ip_network("fd00::/8"),
                ipaddress.ip_network("192.168.1.0/24"),
            )
        ),
    ),
    SetupCase(
        lines="    loadbalance {\n        prefer 10.0.0.0/8\n    }\n    loadbalance\n",
        config=LoadBalanceConfig(),
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS\n",
        config=LoadBalanceConfig(policy=Policy.WEIGHTED, weight_file="WEIGHTS"),
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS {\n        reload 1m30s\n    }\n",
        config=LoadBalanceConfig(policy=Policy.WEIGHTED, weight_file="WEIGHTS", reload_s=90.0),
    ),
    SetupCase(
        lines="    loadbalance weighted /nonexistent/weights {\n        reload 0\n    }\n",
        error="Corefile:2: loadbalance: weight file open error: No such file or directory",
    ),
    SetupCase(
        lines="    loadbalance round_robin extra\n",
        error="Corefile:2: loadbalance: unknown property for round_robin",
    ),
    SetupCase(
        lines="    loadbalance random\n",
        error="Corefile:2: loadbalance: unknown policy: random",
    ),
    SetupCase(
        lines="    loadbalance weighted\n",
        error="Corefile:2: loadbalance: missing weight file argument",
    ),
    SetupCase(
        lines="    loadbalance weighted a b\n",
        error="Corefile:2: loadbalance: unexpected argument(s)",
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS {\n        prefer 10.0.0.0/8\n    }\n",
        error="Corefile:3: loadbalance: unknown property 'prefer'",
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS {\n        reload\n    }\n",
        error="Corefile:3: loadbalance: reload duration value is missing",
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS {\n        reload 1s 2s\n    }\n",
        error="Corefile:3: loadbalance: unexpected argument",
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS {\n        reload soon\n    }\n",
        error="Corefile:3: loadbalance: invalid reload duration 'soon'",
    ),
    SetupCase(
        lines="    loadbalance weighted WEIGHTS {\n        reload -5s\n    }\n",
        error="Corefile:3: loadbalance: invalid reload duration '-5s'",
    ),
    SetupCase(
        lines="    loadbalance {\n        reload 5s\n    }\n",
        error="Corefile:3: loadbalance: unknown property 'reload'",
    ),
    SetupCase(
        lines="    loadbalance {\n        prefer 10.0.0.0/8\n        prefer 10.0.0.1\n    }\n",
        error='Corefile:4: loadbalance: invalid CIDR "10.0.0.1"',
    ),
    SetupCase(
        lines="    loadbalance {\n        prefer 10.0.0.0/33\n    }\n",
        error='Corefile:3: loadbalance: invalid CIDR "10.0.0.0/33"',
    ),
    SetupCase(
        # Every line is checked, not only the one that takes effect.
        lines="    loadbalance bogus\n    loadbalance\n",
        error="Corefile:2: loadbalance: unknown policy: bogus",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.lines.strip().replace("\n", "|"))
def test_setup(case: SetupCase, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.write_text("www.example.org\n10.0.0.1 3\n")
    text = case.corefile(weights)
    if case.error is not None:
        with pytest.raises(CorefileErrors) as info:
            build_config(text)
        assert [str(e) for e in info.value.errors] == [case.error]
        return
    assert case.config is not None
    lines = parse_corefile(text, "Corefile", DIRECTIVES)[0].lines_of("loadbalance")
    config = parse(lines)
    if config.policy is Policy.WEIGHTED:
        assert config.weight_file == str(weights)
        config = LoadBalanceConfig(
            policy=config.policy, weight_file="WEIGHTS", reload_s=config.reload_s
        )
    assert config == case.config
    block = build_config(text).blocks[0]
    assert block.plugins == ("loadbalance", "whoami")


def test_bad_weight_file_is_a_setup_error(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.write_text("www.example.org\n10.0.0.1 0\n")
    with pytest.raises(CorefileErrors) as info:
        build_config(f"example.org {{\n    loadbalance weighted {weights}\n    whoami\n}}\n")
    assert [str(e) for e in info.value.errors] == [
        f'Corefile:2: loadbalance: wrong weight value:"0" in weight file {weights}'
    ]


def test_missing_weight_file_with_reload_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="clusterdns.plugins.loadbalance")
    config = build_config("example.org {\n    loadbalance weighted /nonexistent/w\n    whoami\n}\n")
    assert config.blocks[0].plugins == ("loadbalance", "whoami")
    assert [r.getMessage() for r in caplog.records] == [
        "Failed to open weight file: /nonexistent/w: No such file or directory. "
        "Will try again in 30s"
    ]


# -- round robin -----------------------------------------------------------------------------


def test_shuffle_covers_every_permutation_uniformly() -> None:
    rng = random.Random(20240820)
    section = [A1, A2, A3, A4]
    counts = Tally(tuple(texts(round_robin(section, rng.shuffle)[0])) for _ in range(4800))
    assert set(counts) == {tuple(texts(list(p))) for p in itertools.permutations(section)}
    assert all(150 <= n <= 250 for n in counts.values()), counts  # 200 expected each
    assert section == [A1, A2, A3, A4]  # the input list is never reordered


def test_aaaa_only_and_two_records() -> None:
    rng = random.Random(7)
    v6 = [rr(f"www.example.org. 60 IN AAAA fd00::{i}") for i in (1, 2)]
    orders = {tuple(texts(round_robin(v6, rng.shuffle)[0])) for _ in range(100)}
    assert len(orders) == 2


def test_mixed_section_puts_cnames_first() -> None:
    rng = random.Random(1)
    section = [A1, CN1, MX1, TXT, V6, MX2, A2, CN2, SRV]
    addresses: set[tuple[str, ...]] = set()
    mxs: set[tuple[str, ...]] = set()
    for _ in range(400):
        out, by_chance = round_robin(section, rng.shuffle)
        assert by_chance
        assert out[:4] == [CN1, CN2, TXT, SRV]  # CNAMEs, then the others, in original order
        assert {id(r) for r in out[4:7]} == {id(A1), id(V6), id(A2)}
        assert {id(r) for r in out[7:]} == {id(MX1), id(MX2)}
        addresses.add(tuple(texts(out[4:7])))
        mxs.add(tuple(texts(out[7:])))
    assert len(addresses) == 6 and len(mxs) == 2


@pytest.mark.parametrize(
    ("section", "want", "by_chance"),
    [
        ([], [], False),
        ([A1], [A1], False),
        ([CN1], [CN1], False),
        ([A1, CN1], [CN1, A1], False),
        ([A1, TXT, CN1], [CN1, TXT, A1], False),
        ([MX1, TXT], [TXT, MX1], False),
    ],
)
def test_sections_without_chance(section: list[RR], want: list[RR], by_chance: bool) -> None:
    def no_shuffle(records: list[RR]) -> None:
        assert len(records) <= 1

    out, chance = round_robin(section, no_shuffle)
    assert out == want and chance is by_chance


def test_prefer_after_shuffle() -> None:
    near = rr("www.example.org. 60 IN A 10.1.0.7")
    near6 = rr("www.example.org. 60 IN AAAA fd00::7")
    mapped = rr("www.example.org. 60 IN AAAA ::ffff:a01:8")
    far = [rr(f"www.example.org. 60 IN A 192.0.2.{i}") for i in range(3)]
    nets = (ipaddress.ip_network("fd00::/8"), ipaddress.ip_network("10.1.0.0/16"))
    section = [TXT, far[0], near, MX1, far[1], mapped, CN1, near6, far[2]]
    out = prefer_subnets(section, nets)
    assert out == [CN1, near6, near, mapped, far[0], far[1], far[2], MX1, TXT]


# -- the plugin in a chain -------------------------------------------------------------------

HOSTS_COREFILE = """example.org {
    loadbalance
    hosts {
        10.0.0.1 www.example.org
        10.0.0.2 www.example.org
        10.0.0.3 www.example.org
        10.0.0.9 one.example.org
    }
}
"""


async def test_chain_shuffles_hosts_answers() -> None:
    block = build_config(HOSTS_COREFILE).blocks[0]
    assert isinstance(block.head, LoadBalance)
    assert isinstance(block.head.reorder, RoundRobin)
    block.head.reorder.rng.seed(99)
    orders: Tally[tuple[str, ...]] = Tally()
    for _ in range(600):
        _, w = await serve(block, make_request("www.example.org.", "A"))
        reply = w.reply()
        assert reply is not None and reply.header.rcode == rc.NOERROR
        orders[tuple(str(r.rdata) for r in reply.rr)] += 1
    assert len(orders) == 6
    assert all(60 <= n <= 140 for n in orders.values()), orders


class Scripted:
    """A next plugin that writes a fixed reply, optionally offering it to the fast path."""

    name: ClassVar[str] = "scripted"

    def __init__(
        self, records: list[RR], *, rcode: int = 0, offer: str = "", qtype: str = "A"
    ) -> None:
        self.records = records
        self.rcode = rcode
        self.offer = offer
        self.written: list[DNSRecord] = []

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        reply = req.reply(rcode=self.rcode)
        for r in self.records:
            reply.add_answer(r)
        reply.add_auth(rr("example.org. 60 IN NS ns1.example.org."))
        reply.add_auth(rr("example.org. 60 IN NS ns2.example.org."))
        self.written.append(reply)
        if self.offer == "before":
            w.offer_fastpath(Offer(slot=0, generation=1))
        w.write(reply, self.name)
        if self.offer == "after":
            w.offer_fastpath(Offer(slot=0, generation=1))
        return self.rcode


def chain(nxt: Scripted, seed: int = 5) -> LoadBalance:
    return LoadBalance(RoundRobin(random.Random(seed)), nxt)


@pytest.mark.parametrize("rcode", [rc.NXDOMAIN, rc.SERVFAIL, rc.REFUSED])
async def test_error_replies_untouched(rcode: int) -> None:
    script = Scripted([A1, A2, A3, CN1], rcode=rcode)
    lb = chain(script)
    for _ in range(20):
        req = make_request("www.example.org.", "A")
        w = RecordingWriter(req)
        await lb.serve(req, w)
        assert w.msg is script.written[-1]  # passed on as is, not copied
        assert texts(w.msg.rr) == texts([A1, A2, A3, CN1])


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
async def test_zone_transfers_untouched(qtype: str) -> None:
    script = Scripted([A1, A2, A3])
    lb = chain(script)
    req = make_request("example.org.", qtype)
    w = RecordingWriter(req)
    await lb.serve(req, w)
    assert w.msg is script.written[-1]


async def test_never_changes_the_message_it_was_given() -> None:
    script = Scripted([A1, A2, A3, A4])
    lb = chain(script)
    seen: set[tuple[str, ...]] = set()
    for _ in range(50):
        req = make_request("www.example.org.", "A")
        w = RecordingWriter(req)
        await lb.serve(req, w)
        original = script.written[-1]
        assert texts(original.rr) == texts([A1, A2, A3, A4])
        assert w.msg is not original and w.msg is not None
        seen.add(tuple(texts(w.msg.rr)))
        assert str(w.msg.q.qname) == "www.example.org."
        assert w.msg.header.id == req.id
    assert len(seen) > 1


@pytest.mark.parametrize("when", ["before", "after"])
async def test_fastpath_offer_carries_other_orders_when_shuffled(when: str) -> None:
    # A shuffled reply is offered with other orders of the same records, which replays cycle
    # through, so the fast path keeps shuffling too.
    lb = chain(Scripted([A1, A2], offer=when))
    req = make_request("www.example.org.", "A")
    w = RecordingWriter(req)
    await lb.serve(req, w)
    assert w.written and w.offer is not None and w.offer.variants is not None
    variants = w.offer.variants(8)
    assert len(variants) == 8
    for msg in variants:
        assert sorted(texts(msg.rr)) == sorted(texts([A1, A2]))
    assert len({tuple(texts(m.rr)) for m in variants}) > 1


@pytest.mark.parametrize("when", ["before", "after"])
async def test_fastpath_offer_kept_for_a_fixed_order(when: str) -> None:
    # One address (the two NS records are not shuffled): the same bytes every time.
    lb = chain(Scripted([CN1, A1], offer=when))
    req = make_request("alias.example.org.", "A")
    w = RecordingWriter(req)
    await lb.serve(req, w)
    assert w.offer == Offer(slot=0, generation=1)
    assert w.msg is not None and texts(w.msg.rr) == texts([CN1, A1])


async def test_nxdomain_keeps_offer() -> None:
    lb = chain(Scripted([A1, A2], rcode=rc.NXDOMAIN, offer="before"))
    req = make_request("www.example.org.", "A")
    w = RecordingWriter(req)
    await lb.serve(req, w)
    assert w.offer is not None


def test_writer_is_a_wrapper() -> None:
    req = make_request("www.example.org.", "A")
    inner = RecordingWriter(req)
    w = LoadBalanceWriter(inner, RoundRobin())
    assert (w.proto, w.remote, w.local) == (inner.proto, inner.remote, inner.local)


# -- weighted --------------------------------------------------------------------------------

WEIGHTS = """\
# weights for www
www.example.org
100.64.1.1 3
100.64.1.2 1

WWW.Example.ORG.
100.64.1.3 2
other.example.org
::ffff:100.64.1.1 9
"""


def test_parse_weights() -> None:
    table = parse_weights(WEIGHTS, "w")
    ip = ipaddress.ip_address
    assert table == WeightTable(
        {
            "www.example.org.": (
                (ip("100.64.1.1"), 3),
                (ip("100.64.1.2"), 1),
                (ip("100.64.1.3"), 2),
            ),
            "other.example.org.": ((ip("100.64.1.1"), 9),),
        }
    )
    assert table.weight("Www.Example.Org.", ip("100.64.1.3")) == 2
    assert table.weight("www.example.org.", ip("100.64.1.9")) == 1
    assert table.weight("nowhere.example.org.", ip("100.64.1.1")) == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "100.64.1.1\n",
            'wrong domain name:"100.64.1.1" in weight file F. (Maybe a missing weight value?)',
        ),
        ("a.org\nnot-an-ip 3\n", 'wrong IP address:"not-an-ip" in weight file F'),
        ("a.org\n10.0.0.1 0\n", 'wrong weight value:"0" in weight file F'),
        ("a.org\n10.0.0.1 256\n", 'wrong weight value:"256" in weight file F'),
        ("a.org\n10.0.0.1 -1\n", 'wrong weight value:"-1" in weight file F'),
        ("10.0.0.1 1\n", "missing domain name in weight file F"),
        ("a.org\n10.0.0.1 1 2\n", 'could not parse weight line:"10.0.0.1 1 2" in weight file F'),
    ],
)
def test_parse_weights_errors(text: str, error: str) -> None:
    with pytest.raises(WeightFileError) as info:
        parse_weights(text, "F")
    assert str(info.value) == error


def weighted_reply(*records: RR, qtype: str = "A") -> DNSRecord:
    reply = make_request("www.example.org.", qtype).reply()
    for r in records:
        reply.add_answer(r)
    return reply


def test_weighted_top_address_follows_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_text(WEIGHTS)
    weights = WeightFile(str(path), 0)
    assert weights.load()
    policy = Weighted(weights, random.Random(3))
    addrs = [rr(f"www.example.org. 60 IN A 100.64.1.{i}") for i in (1, 2, 3)]
    tops: Tally[str] = Tally()
    for _ in range(6000):
        out, by_chance = policy(weighted_reply(CN1, *addrs, MX1, TXT))
        assert by_chance
        assert out.rr[:2] == [CN1, TXT] and out.rr[-1] is MX1
        tops[str(out.rr[2].rdata)] += 1
    assert 2800 <= tops["100.64.1.1"] <= 3200
    assert 800 <= tops["100.64.1.2"] <= 1200
    assert 1800 <= tops["100.64.1.3"] <= 2200


def test_weighted_leaves_other_types_and_address_free_sections(tmp_path: Path) -> None:
    weights = WeightFile(str(tmp_path / "missing"), 10)
    policy = Weighted(weights, random.Random(3))
    mx_reply = weighted_reply(MX1, A1, A2, qtype="MX")
    assert policy(mx_reply) == (mx_reply, False)
    no_addr = weighted_reply(CN1, TXT)
    assert policy(no_addr) == (no_addr, False)
    single = weighted_reply(TXT, A1)
    out, by_chance = policy(single)
    assert texts(out.rr) == texts([TXT, A1]) and not by_chance


async def test_weight_file_reload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "w"
    path.write_text("www.example.org\n10.0.0.1 7\n")
    ticks: list[float] = []
    stop_after = 3

    async def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 2:
            path.write_text("www.example.org\n10.0.0.1 9\n")
        if len(ticks) == 3:
            path.write_text("www.example.org\n10.0.0.1 nine\n")
        if len(ticks) > stop_after:
            raise _Stop

    class _Stop(Exception):
        pass

    weights = WeightFile(str(path), 15.0, sleep=sleep)
    ip = ipaddress.ip_address("10.0.0.1")
    assert weights.load() and weights.table.weight("www.example.org.", ip) == 7
    assert not weights.load()  # unchanged content
    caplog.set_level(logging.INFO, logger="clusterdns.plugins.loadbalance")
    with pytest.raises(_Stop):
        await weights.watch()
    assert ticks == [15.0] * 4
    # The change was taken, the broken version logged and ignored.
    assert weights.table.weight("www.example.org.", ip) == 9
    messages = [r.getMessage() for r in caplog.records]
    assert f"Successfully reloaded weight file {path}" in messages
    assert f'wrong weight value:"nine" in weight file {path}' in messages
    path.unlink()
    weights.reload()
    assert weights.table.weight("www.example.org.", ip) == 9
    assert "weight file open error" in caplog.records[-1].getMessage()


async def test_weighted_hooks(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_text("www.example.org\n10.0.0.1 7\n")
    config = build_config(
        f"example.org {{\n    loadbalance weighted {path} {{\n        reload 1h\n    }}\n"
        "    whoami\n}\n"
    )
    assert len(config.process.startup) == 1 and len(config.process.shutdown) == 1
    await config.process.startup[0]()
    await config.process.shutdown[0]()
    head = config.blocks[0].head
    assert isinstance(head, LoadBalance) and isinstance(head.reorder, Weighted)
    assert (
        head.reorder.weights.table.weight("www.example.org.", ipaddress.ip_address("10.0.0.1")) == 7
    )
