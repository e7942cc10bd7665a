"""The fast path answers byte for byte what the full chain answers.

Through the real server on loopback, with the kubeadm Corefile (new cache form) and the reference
cluster: every worked example of spec §6.14 and a set of EDNS, DO, CD, AD, letter-case and
buffer-size variants is asked twice (the second reply is a replay whenever the first was
offered) and once more through the full chain with the fast path off; the replay must equal the
full chain's reply in every byte but the ID. Replies whose order loadbalance leaves to chance
are never stored; for them the test checks that nothing was replayed and that the records match.
"""

from __future__ import annotations

import pytest
from dnslib import DNSRecord

from clusterdns.dnsutil import rcode as rc
from tests.perf.rig import CACHE_NEW, Rig, kubeadm_rig, query, with_id
from tests.plugins.kubernetes.cluster import K8sCase
from tests.plugins.kubernetes.test_reference import CASES

COOKIE = 10
NSID = 3


def shuffled(msg: DNSRecord) -> bool:
    """Whether loadbalance reorders this reply by chance (2+ addresses or MX in a section)."""
    if msg.header.rcode != rc.NOERROR:
        return False
    for section in (msg.rr, msg.auth, msg.ar):
        if sum(1 for r in section if r.rtype in (rc.A, rc.AAAA)) > 1:
            return True
        if sum(1 for r in section if r.rtype == rc.MX) > 1:
            return True
    return False


APEXES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")


def replayable(qname: str, qtype: str, msg: DNSRecord, cache: str) -> bool | None:
    """Whether the full chain's reply is one the fast path must store and replay.

    Authoritative kubernetes replies are, except those loadbalance shuffles, those built from
    the server's own addresses (apex NS, `ns.dns`), truncated ones, and those the cache stores
    (then their TTLs count down): every name with `cache 30`, the reverse zones with the new form.
    (A cache may replay what it stores until the TTL moves; the old form is checked without
    this prediction. A shuffled reply may be replayed in several stored orders, if loadbalance
    offers them: None, either way.)
    """
    name = qname.lower()
    own_addresses = (qtype == "NS" and name in APEXES) or name.startswith("ns.dns.")
    in_cluster_zone = name == "cluster.local." or name.endswith(".cluster.local.")
    if cache == "old" or (cache == "new" and not in_cluster_zone):
        return False
    if msg.header.aa and not msg.header.tc and not own_addresses and shuffled(msg):
        return None
    return bool(msg.header.aa) and not msg.header.tc and not own_addresses


def records(msg: DNSRecord) -> list[list[str]]:
    """Each section as sorted text with TTLs left out (a cache in front counts them down)."""
    out: list[list[str]] = []
    for section in (msg.rr, msg.auth, msg.ar):
        texts = []
        for r in section:
            r.ttl = 0
            texts.append(str(r))
        out.append(sorted(texts))
    return out


def ttls(msg: DNSRecord) -> list[int]:
    return sorted(int(r.ttl) for s in (msg.rr, msg.auth, msg.ar) if s for r in s if r.rtype != 41)


async def compare(
    rig: Rig, wire: bytes, label: str, *, proto: str = "udp", countdown: bool = False
) -> bool:
    """Ask twice, then through the full chain; check the replay. Returns whether it replayed.

    `countdown`: a cache in front stores the reply and counts its TTLs down, so the full
    chain's reply may be a second older than the replay; then only the records and TTLs
    within a second are compared.
    """
    rig.clear()
    first = await rig.ask(with_id(wire, 1), proto=proto)
    before = rig.hits
    second = await rig.ask(with_id(wire, 2), proto=proto)
    replayed = rig.hits > before
    full = await rig.full_chain(with_id(wire, 3), proto=proto)
    assert second[:2] == b"\x00\x02", f"{label}: ID not spliced"
    if countdown:
        got, want = DNSRecord.parse(second), DNSRecord.parse(full)
        assert got.header.bitmap == want.header.bitmap, label
        gap = [a - b for a, b in zip(ttls(got), ttls(want), strict=True)]
        assert all(0 <= d <= 1 for d in gap), f"{label}: TTLs {ttls(got)} vs {ttls(want)}"
        assert records(got) == records(want), label
    elif replayed and shuffled(DNSRecord.parse(full)):
        # One of the stored orders: the same header, size and records as the full chain's.
        got, want = DNSRecord.parse(second), DNSRecord.parse(full)
        assert len(second) == len(full) and got.header.bitmap == want.header.bitmap, label
        assert [sorted(map(str, s)) for s in (got.rr, got.auth, got.ar)] == [
            sorted(map(str, s)) for s in (want.rr, want.auth, want.ar)
        ], label
    elif replayed:
        assert second[2:] == full[2:], f"{label}: replay differs from the full chain"
        assert first[2:] == full[2:], f"{label}: the stored reply differs from the full chain"
    else:
        got, want = DNSRecord.parse(second), DNSRecord.parse(full)
        assert got.header.bitmap == want.header.bitmap, label
        assert records(got) == records(want), label
    return replayed


CACHE_FORMS = {"new": CACHE_NEW, "old": "cache 30", "none": None}


def expected(case: K8sCase, full: bytes, cache: str) -> bool | None:
    return not case.upstream and replayable(case.qname, case.qtype, DNSRecord.parse(full), cache)


@pytest.mark.parametrize("cache", sorted(CACHE_FORMS))
@pytest.mark.parametrize("options", sorted({c.options for c in CASES}))
async def test_every_worked_example_replays_the_full_chain_reply(options: str, cache: str) -> None:
    cases = [c for c in CASES if c.options == options]
    async with kubeadm_rig(options=options, cache=CACHE_FORMS[cache]) as rig:
        wrong: list[str] = []
        for case in cases:
            wire = query(case.qname, case.qtype)
            replayed = await compare(rig, wire, case.label(), countdown=cache == "old")
            want = expected(case, await rig.full_chain(wire), cache)
            if cache != "old" and want is not None and replayed != want:
                wrong.append(f"{case.label()}: replayed={replayed}, expected {want}")
        assert not wrong, "\n".join(wrong)


def test_the_table_replays_positive_and_negative_answers() -> None:
    kinds = {c.rcode for c in CASES if not c.upstream}
    assert {"NOERROR", "NXDOMAIN"} <= kinds


NAMES = [
    ("api.prod.svc.cluster.local.", "A"),
    ("api.prod.svc.cluster.local.", "AAAA"),
    ("nosuch.prod.svc.cluster.local.", "A"),
    ("nosuch.svc.cluster.local.", "AAAA"),
    ("_https._tcp.kubernetes.default.svc.cluster.local.", "SRV"),
    ("5.5.96.10.in-addr.arpa.", "PTR"),
    ("10-244-1-30.prod.pod.cluster.local.", "A"),
    ("web-0.web.prod.svc.cluster.local.", "A"),
    ("web.prod.svc.cluster.local.", "SRV"),
    ("alias.prod.svc.cluster.local.", "A"),
    ("cluster.local.", "SOA"),
    ("empty.prod.svc.cluster.local.", "A"),
]

VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "no-rd": {"rd": False},
    "cd": {"cd": True},
    "ad": {"ad": True},
    "edns-1232": {"edns": 1232},
    "edns-4096-do": {"edns": 4096, "do": True},
    "edns-do-cd": {"edns": 1232, "do": True, "cd": True},
    "edns-tiny": {"edns": 100},
    "edns-512": {"edns": 512},
    "edns-cookie": {"edns": 1232, "options": ((COOKIE, b"\x01\x02\x03\x04\x05\x06\x07\x08"),)},
    "edns-nsid": {"edns": 1232, "options": ((NSID, b""),)},
}


def mixed_case(name: str) -> str:
    return "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(name))


@pytest.mark.parametrize("proto", ["udp", "tcp"])
async def test_variants_replay_the_full_chain_reply(proto: str) -> None:
    async with kubeadm_rig() as rig:
        replays = 0
        for qname, qtype in NAMES:
            for variant, flags in VARIANTS.items():
                for name in (qname, mixed_case(qname)):
                    wire = query(name, qtype, **flags)  # type: ignore[arg-type]
                    label = f"{name} {qtype} {variant} {proto}"
                    replays += await compare(rig, wire, label, proto=proto)
        # Most of these are stored: the positive and negative single-answer replies.
        assert replays >= len(VARIANTS) * 2 * 8


async def test_letter_case_is_kept_and_keyed() -> None:
    async with kubeadm_rig() as rig:
        lower = query("api.prod.svc.cluster.local.", "A")
        upper = query("API.Prod.svc.cluster.local.", "A")
        await rig.ask(lower)
        before = rig.hits
        reply = DNSRecord.parse(await rig.ask(upper))
        assert rig.hits == before  # another key: the full chain answered
        assert str(reply.q.qname) == "API.Prod.svc.cluster.local."
        assert str(reply.rr[0].rname) == "API.Prod.svc.cluster.local."
        again = DNSRecord.parse(await rig.ask(upper))
        assert rig.hits == before + 1
        assert str(again.rr[0].rname) == "API.Prod.svc.cluster.local."


async def test_ipv6_clients_get_the_same_replay() -> None:
    async with kubeadm_rig() as rig:
        wire = query("api.prod.svc.cluster.local.", "A", edns=1232)
        first = await rig.ask(wire, host="::1")
        before = rig.hits
        second = await rig.ask(with_id(wire, 7), host="::1")
        assert rig.hits == before + 1
        assert second[2:] == first[2:] and second[:2] == b"\x00\x07"


async def test_a_query_advertising_more_than_the_udp_cap_is_replayed_as_the_capped_query() -> None:
    async with kubeadm_rig() as rig:
        wire = query("api.prod.svc.cluster.local.", "A", edns=65535)
        first = await rig.ask(wire)
        before = rig.hits
        second = await rig.ask(with_id(wire, 9))
        assert rig.hits == before + 1
        assert second[2:] == first[2:] and second[:2] == b"\x00\x09"
        assert DNSRecord.parse(second).rr[0].rdata == DNSRecord.parse(first).rr[0].rdata
