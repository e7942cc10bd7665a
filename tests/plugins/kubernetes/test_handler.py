"""The handler's contract with the chain: routing, return codes, ExternalName chasing through the
block's chain, reply sizes (SRV compression), the fast-path offers and changes in the store."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

import dns.message
import pytest
from dnslib import QTYPE, RR, SRV, TXT, A, DNSLabel, DNSQuestion, DNSRecord

from clusterdns.chain.fastpath import Generations, Offer
from clusterdns.chain.request import Request
from clusterdns.chain.setup import BlockSettings
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.zones import parse_key
from clusterdns.errors import PluginError
from clusterdns.k8s.objects import Kind, from_api
from clusterdns.plugins.kubernetes.handler import NAME, Kubernetes, listening_addresses
from clusterdns.plugins.kubernetes.records import RegisteringSRV, srv_weight
from tests.dnstest import LOCAL, REMOTE, Case, RecordingWriter, make_request
from tests.plugins.kubernetes.cluster import (
    AA,
    EDGE_YAML,
    REFERENCE_YAML,
    SOA,
    Setup,
    Upstream,
    kubernetes_config,
    load_store,
    make_plugin,
    reference_corefile,
    soa,
)


def reference(options: str = "", *, head: bool = True, upstream: Upstream | None = None) -> Setup:
    store = load_store(REFERENCE_YAML, EDGE_YAML)
    return make_plugin(reference_corefile(options), store, head=head, upstream=upstream)


async def ask(s: Setup, qname: str, qtype: str = "A") -> tuple[int, RecordingWriter]:
    req = make_request(qname, qtype)
    w = RecordingWriter(req)
    code = await s.plugin.serve(req, w)
    return code, w


def stock_srv_size(msg: DNSRecord) -> int:
    """The packed size of `msg` with dnslib's own SRV rdata (targets never registered)."""
    rr = [
        RR(
            r.rname,
            r.rtype,
            rdata=SRV(r.rdata.priority, r.rdata.weight, r.rdata.port, r.rdata.target),
            ttl=r.ttl,
        )
        if r.rtype == QTYPE.SRV
        else r
        for r in msg.rr
    ]
    return len(
        DNSRecord(msg.header, questions=msg.questions, rr=rr, auth=msg.auth, ar=msg.ar).pack()
    )


# -- routing and return codes ------------------------------------------------------------------


async def test_names_outside_the_zones_go_to_the_next_plugin() -> None:
    s = reference()
    code, w = await ask(s, "example.com.")
    assert code == rc.NOERROR and w.plugin == "forward"
    assert s.upstream.calls == ["example.com. A"]


async def test_without_a_next_plugin_outside_names_fail() -> None:
    config = kubernetes_config(reference_corefile())
    plugin = Kubernetes(config, load_store(REFERENCE_YAML), None, None, lambda: [])
    req = make_request("example.com.")
    with pytest.raises(PluginError, match="plugin/kubernetes: no next plugin found"):
        await plugin.serve(req, RecordingWriter(req))


async def test_non_in_questions_are_never_answered() -> None:
    s = reference()
    q = DNSRecord.question("api.prod.svc.cluster.local.", "A", "CH")
    wire = bytes(q.pack())
    req = Request(
        DNSRecord.parse(wire), wire, proto="udp", remote=("10.0.0.1", 5353), local=("127.0.0.1", 53)
    )
    w = RecordingWriter(req)
    await s.plugin.serve(req, w)
    assert w.plugin == "forward"
    assert s.upstream.calls == ["api.prod.svc.cluster.local. A"]


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
async def test_zone_transfers_are_refused_without_writing(qtype: str) -> None:
    s = reference()
    code, w = await ask(s, "cluster.local.", qtype)
    assert code == rc.REFUSED and not w.written


@pytest.mark.parametrize(
    ("qname", "qtype", "code"),
    [
        ("api.prod.svc.cluster.local.", "A", rc.NOERROR),
        ("prod.svc.cluster.local.", "A", rc.NOERROR),
        ("nosuch.prod.svc.cluster.local.", "A", rc.NXDOMAIN),
    ],
)
async def test_returns_the_written_rcode(qname: str, qtype: str, code: int) -> None:
    got, w = await ask(reference(), qname, qtype)
    assert got == code == w.rcode and w.plugin == NAME


async def test_replies_mirror_the_query_header() -> None:
    s = reference()
    req = make_request("api.prod.svc.cluster.local.", edns_size=1232, do=True)
    req.msg.header.rd = 0
    w = RecordingWriter(req)
    await s.plugin.serve(req, w)
    reply = w.reply()
    assert reply is not None
    assert reply.header.id == req.id and reply.header.aa and not reply.header.ra
    assert not reply.header.rd and not reply.header.ad


async def test_fallthrough_comes_before_the_sync_check() -> None:
    store = load_store(REFERENCE_YAML, kinds=(Kind.NAMESPACE,))
    s = make_plugin(reference_corefile("fallthrough"), store)
    code, w = await ask(s, "nosuch.prod.svc.cluster.local.")
    assert w.plugin == "forward" and code == rc.NXDOMAIN


async def test_namespace_level_answers_come_from_a_partial_list() -> None:
    store = load_store(REFERENCE_YAML, kinds=(Kind.NAMESPACE,))
    s = make_plugin(reference_corefile(), store)
    _, w = await ask(s, "prod.svc.cluster.local.")
    Case(qname="prod.svc.cluster.local.", ns=[SOA], flags=AA).check(w.reply())


# -- ExternalName chasing through the chain ------------------------------------------------------


async def test_chase_runs_from_the_top_of_the_block_with_the_clients_edns() -> None:
    @dataclass
    class Spy:
        name: ClassVar[str] = "spy"
        inner: Kubernetes | None = None
        seen: list[Request] = field(default_factory=list)

        async def serve(self, req: Request, w: ResponseWriter) -> int:
            self.seen.append(req)
            assert self.inner is not None
            return await self.inner.serve(req, w)

    s = reference()
    spy = Spy(s.plugin)
    s.block.head = spy
    req = make_request("db.prod.svc.cluster.local.", "A", edns_size=1232, do=True)
    w = RecordingWriter(req)
    await s.plugin.serve(req, w)
    assert [r.qname for r in spy.seen] == ["db.example.com."]
    sub = spy.seen[0]
    assert sub.qtype == rc.A and sub.edns is not None and sub.edns.udp_size == 1232 and sub.do
    assert sub.proto == req.proto and sub.remote == req.remote and sub.zone == "."
    assert s.upstream.calls == ["db.example.com. A"]


async def test_chase_copies_the_tc_bit() -> None:
    s = reference(upstream=Upstream(truncate=True))
    _, w = await ask(s, "db.prod.svc.cluster.local.")
    reply = w.reply()
    assert reply is not None and reply.header.tc
    Case(
        qname="db.prod.svc.cluster.local.",
        flags="qr aa rd tc",
        ordered=True,
        answer=[
            "db.prod.svc.cluster.local. 30 IN CNAME db.example.com.",
            "db.example.com. 300 IN A 192.0.2.50",
        ],
    ).check(reply)


async def test_chase_without_a_chain_head_drops_the_cname() -> None:
    s = reference(head=False)
    _, w = await ask(s, "db.prod.svc.cluster.local.")
    Case(qname="db.prod.svc.cluster.local.", ns=[SOA], flags=AA).check(w.reply())
    assert s.upstream.calls == []


async def test_chase_keeps_the_cname_when_the_chain_fails() -> None:
    @dataclass
    class Failing:
        name: ClassVar[str] = "forward"

        async def serve(self, req: Request, w: ResponseWriter) -> int:
            raise PluginError("forward", "no healthy upstream")

    config = kubernetes_config(reference_corefile())
    block = BlockSettings(0, tuple(parse_key(".", 53)), "Corefile", 1, ())
    plugin = Kubernetes(config, load_store(REFERENCE_YAML), Failing(), block, lambda: [])
    block.head = plugin
    req = make_request("db.prod.svc.cluster.local.")
    w = RecordingWriter(req)
    assert await plugin.serve(req, w) == rc.NOERROR
    Case(
        qname="db.prod.svc.cluster.local.",
        flags=AA,
        answer=["db.prod.svc.cluster.local. 30 IN CNAME db.example.com."],
    ).check(w.reply())


async def test_cname_loops_through_other_zones_stop_at_the_first_repeat() -> None:
    config = kubernetes_config(reference_corefile(zones="cluster.local other.local"))
    s = make_plugin(config, load_store(REFERENCE_YAML, EDGE_YAML))
    _, w = await ask(s, "ping.edge.svc.cluster.local.")
    Case(
        qname="ping.edge.svc.cluster.local.",
        flags=AA,
        ordered=True,
        answer=[
            "ping.edge.svc.cluster.local. 30 IN CNAME pong.edge.svc.other.local.",
            "pong.edge.svc.other.local. 30 IN CNAME ping.edge.svc.cluster.local.",
        ],
    ).check(w.reply())
    assert w.offer is None
    assert s.upstream.calls == []


async def test_cname_chains_are_capped_at_ten() -> None:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"hop{i}", "namespace": "prod"},
            "spec": {"type": "ExternalName", "externalName": f"hop{i + 1}.prod.svc.cluster.local"},
        }
        for i in range(12)
    ]
    store = load_store(REFERENCE_YAML)
    for doc in docs:
        obj = from_api(Kind.SERVICE, doc)
        assert obj is not None
        store.apply(Kind.SERVICE, "ADDED", obj)
    store.apply(
        Kind.SERVICE,
        "MODIFIED",
        from_api(
            Kind.SERVICE,
            {  # type: ignore[arg-type]
                "metadata": {"name": "hop9", "namespace": "prod"},
                "spec": {"type": "ExternalName", "externalName": "api.prod.svc.cluster.local"},
            },
        ),
    )
    s = make_plugin(reference_corefile(), store)
    _, w = await ask(s, "hop0.prod.svc.cluster.local.")
    reply = w.reply()
    assert reply is not None
    assert [QTYPE[r.rtype] for r in reply.rr] == ["CNAME"] * 10 + ["A"]
    store.apply(
        Kind.SERVICE,
        "MODIFIED",
        from_api(
            Kind.SERVICE,
            {  # type: ignore[arg-type]
                "metadata": {"name": "hop9", "namespace": "prod"},
                "spec": {"type": "ExternalName", "externalName": "hop10.prod.svc.cluster.local"},
            },
        ),
    )
    store.apply(
        Kind.SERVICE,
        "MODIFIED",
        from_api(
            Kind.SERVICE,
            {  # type: ignore[arg-type]
                "metadata": {"name": "hop10", "namespace": "prod"},
                "spec": {"type": "ExternalName", "externalName": "api.prod.svc.cluster.local"},
            },
        ),
    )
    _, w = await ask(s, "hop0.prod.svc.cluster.local.")
    Case(qname="hop0.prod.svc.cluster.local.", flags=AA, ns=[soa(serial=int(store.serial))]).check(
        w.reply()
    )


# -- names whose labels hold a dot, a backslash or odd bytes (the escaped text form) ----------


def wire_request(labels: tuple[bytes, ...], qtype: str = "A") -> Request:
    """A request for a name given as wire labels (text would split a label holding a dot)."""
    q = DNSRecord(q=DNSQuestion(DNSLabel(labels), getattr(QTYPE, qtype)))
    wire = bytes(q.pack())
    return Request(parse_message(wire), wire, proto="udp", remote=REMOTE, local=LOCAL)


async def ask_wire(s: Setup, labels: tuple[bytes, ...], qtype: str = "A") -> RecordingWriter:
    req = wire_request(labels, qtype)
    w = RecordingWriter(req)
    await s.plugin.serve(req, w)
    return w


def reply_of(w: RecordingWriter) -> DNSRecord:
    """The reply sent, decoded as the server decodes (dnslib's parser refuses non-UTF-8)."""
    assert w.sent
    return parse_message(w.sent[0])


def owner_labels(rr: RR) -> tuple[bytes, ...]:
    return tuple(bytes(x) for x in rr.rname.label)


@pytest.mark.parametrize(
    ("labels", "text"),
    [
        ((b"evil.cluster", b"local"), r"evil\.cluster.local."),
        ((b"api", b"prod", b"svc.cluster", b"local"), r"api.prod.svc\.cluster.local."),
        ((b"api", b"prod", b"svc", b"cluster.local"), r"api.prod.svc.cluster\.local."),
        ((b"x.in-addr", b"arpa"), r"x\.in-addr.arpa."),
    ],
)
async def test_a_label_holding_a_dot_does_not_reach_into_the_zone(
    labels: tuple[bytes, ...], text: str
) -> None:
    r"""`evil\.cluster.local.` is the label `evil.cluster` under `local.`: not ours (as CoreDNS)."""
    s = reference()
    w = await ask_wire(s, labels)
    assert w.plugin == "forward" and s.upstream.calls == [f"{text} A"]


@pytest.mark.parametrize(
    ("labels", "qtype"),
    [
        ((b"api.prod", b"svc", b"cluster", b"local"), "A"),  # namespace `api.prod`
        ((b"prod.svc", b"cluster", b"local"), "A"),  # neither svc nor pod
        ((b"a.b", b"prod", b"svc", b"cluster", b"local"), "A"),  # Service `a.b`
        ((b"api\\", b"prod", b"svc", b"cluster", b"local"), "A"),
        ((b"api\xff", b"prod", b"svc", b"cluster", b"local"), "AAAA"),
        ((b"api", b"prod\x00", b"svc", b"cluster", b"local"), "A"),
        ((b"_http._tcp", b"api", b"prod", b"svc", b"cluster", b"local"), "SRV"),  # one label
        ((b"10-244-1-5.prod", b"pod", b"cluster", b"local"), "A"),
        ((b"10-244-1.5", b"prod", b"pod", b"cluster", b"local"), "A"),  # address `10-244-1.5`
        ((b"10-244-1-5.x", b"prod", b"pod", b"cluster", b"local"), "A"),  # not `10-244-1-5`
    ],
)
async def test_a_label_holding_odd_bytes_names_nothing(
    labels: tuple[bytes, ...], qtype: str
) -> None:
    """No namespace, Service, port or pod address can hold such a label: NXDOMAIN, as CoreDNS.

    Read at every dot, most of these texts would name something that exists (`api.prod.svc...`).
    """
    w = await ask_wire(reference(), labels, qtype)
    reply = reply_of(w)
    assert w.plugin == NAME
    assert reply.header.rcode == rc.NXDOMAIN and not reply.rr, reply
    assert [str(rr.rname) for rr in reply.auth] == ["cluster.local."]


async def test_an_odd_reverse_label_is_not_an_address() -> None:
    r"""`1\.1.244.10.in-addr.arpa.` has four labels, one of them `1.1`: no address, fallthrough."""
    s = reference()
    w = await ask_wire(s, (b"1.1", b"244", b"10", b"in-addr", b"arpa"), "PTR")
    assert w.plugin == "forward" and s.upstream.calls == [r"1\.1.244.10.in-addr.arpa. PTR"]


async def test_an_escaped_name_keeps_the_clients_letter_case_in_the_soa() -> None:
    w = await ask_wire(reference(), (b"a.b", b"prod", b"svc", b"CLUSTER", b"Local"))
    reply = reply_of(w)
    assert reply.header.rcode == rc.NXDOMAIN
    assert [owner_labels(rr) for rr in reply.auth] == [(b"CLUSTER", b"Local")]


@pytest.mark.parametrize("first", [b"x.y", b"\xff", b"\x80", b"a\\b", b"\x00", b" "])
@pytest.mark.parametrize("qtype", ["A", "SRV"])
async def test_pod_names_are_answered_with_the_questions_own_labels(
    first: bytes, qtype: str
) -> None:
    """The label left of a pod address is ignored (as CoreDNS): the owner is the question."""
    labels = (first, b"10-244-1-5", b"Prod", b"pod", b"Cluster", b"local")
    w = await ask_wire(reference(), labels, qtype)
    reply = reply_of(w)
    assert reply.header.rcode == rc.NOERROR and len(reply.rr) == 1, reply
    assert owner_labels(reply.rr[0]) == labels
    if qtype == "A":
        assert str(reply.rr[0].rdata) == "10.244.1.5"
    else:
        assert str(reply.rr[0].rdata.target) == "10-244-1-5.prod.pod.cluster.local."
        assert [str(rr.rname) for rr in reply.ar] == ["10-244-1-5.prod.pod.cluster.local."]


async def test_the_owner_of_every_answer_to_an_escaped_question_is_the_question() -> None:
    """TXT of dns-version, NS of the apex: records owned by the question keep its bytes."""
    s = reference()
    for labels, qtype in [
        ((b"dns-version", b"Cluster", b"local"), "TXT"),
        ((b"CLUSTER", b"local"), "NS"),
    ]:
        w = await ask_wire(s, labels, qtype)
        reply = reply_of(w)
        assert reply.rr, reply
        assert all(owner_labels(rr) == labels for rr in reply.rr), reply


# -- reply sizes -------------------------------------------------------------------------------


async def test_headless_srv_reply_registers_srv_targets_for_compression() -> None:
    _, w = await ask(reference(), "_http._tcp.web.prod.svc.cluster.local.", "SRV")
    assert w.msg is not None and not w.truncated
    # 12 header + 43 question + 4 SRV (52+52+58+61) + glue owners as 2-byte pointers (3x16 + 28).
    assert len(w.wire) == 354
    assert stock_srv_size(w.msg) == 393
    parsed = dns.message.from_wire(w.wire)
    assert sorted(str(r.target) for rrset in parsed.answer for r in rrset) == [
        "10-244-3-12.web.prod.svc.cluster.local.",
        "fd00-10-244--c.web.prod.svc.cluster.local.",
        "web-0.web.prod.svc.cluster.local.",
        "web-1.web.prod.svc.cluster.local.",
    ]
    assert {str(rrset.name) for rrset in parsed.additional} == {
        "10-244-3-12.web.prod.svc.cluster.local.",
        "fd00-10-244--c.web.prod.svc.cluster.local.",
        "web-0.web.prod.svc.cluster.local.",
        "web-1.web.prod.svc.cluster.local.",
    }


async def test_statefulset_srv_reply_fits_512_bytes_as_coredns_packs_it() -> None:
    _, w = await ask(reference(), "_cql._tcp.cassandra.edge.svc.cluster.local.", "SRV")
    assert w.msg is not None
    assert len(w.wire) == 460 and not w.truncated
    assert stock_srv_size(w.msg) == 520  # dnslib's own SRV packing would truncate this reply
    parsed = dns.message.from_wire(w.wire)
    assert len(parsed.answer[0]) == 5 and sum(len(r) for r in parsed.additional) == 5


def test_registering_srv_round_trips_and_skips_far_offsets() -> None:
    msg = DNSRecord.question("x.example.")
    msg.add_answer(RR("x.example.", QTYPE.TXT, rdata=TXT("a" * 250), ttl=1))
    for _ in range(70):
        msg.add_answer(RR("x.example.", QTYPE.TXT, rdata=TXT("b" * 250), ttl=1))
    msg.add_answer(
        RR("x.example.", QTYPE.SRV, rdata=RegisteringSRV(0, 1, 2, "t.far.example."), ttl=1)
    )
    msg.add_ar(RR("t.far.example.", QTYPE.A, rdata=A("192.0.2.1"), ttl=1))
    wire = bytes(msg.pack())
    assert len(wire) > 0x3FFF
    parsed = DNSRecord.parse(wire)
    assert str(parsed.rr[-1].rdata.target) == "t.far.example."
    assert str(parsed.ar[0].rname) == "t.far.example."


@pytest.mark.parametrize(
    ("count", "weight"),
    [(1, 100), (2, 50), (3, 33), (4, 25), (6, 16), (100, 1), (101, 1), (1000, 1)],
)
def test_srv_weight(count: int, weight: int) -> None:
    assert srv_weight(count) == weight


# -- fast path ---------------------------------------------------------------------------------


async def test_offers_replies_that_depend_only_on_the_query_and_the_store() -> None:
    s = reference()
    slot = s.plugin.slots["cluster.local."]
    assert s.plugin.slots["in-addr.arpa."] != slot
    for qname, qtype in [
        ("api.prod.svc.cluster.local.", "A"),
        ("nosuch.prod.svc.cluster.local.", "A"),
        ("prod.svc.cluster.local.", "A"),
        ("alias.prod.svc.cluster.local.", "A"),
        ("_http._tcp.web.prod.svc.cluster.local.", "SRV"),
        ("cluster.local.", "SOA"),
    ]:
        _, w = await ask(s, qname, qtype)
        assert w.offer == Offer(slot, s.generations.generation(slot)), qname
    _, w = await ask(s, "1.0.96.10.in-addr.arpa.", "PTR")
    assert w.offer == Offer(
        s.plugin.slots["in-addr.arpa."], s.generations.generation(s.plugin.slots["in-addr.arpa."])
    )


@pytest.mark.parametrize(
    ("qname", "qtype"),
    [
        ("db.prod.svc.cluster.local.", "A"),  # chased upstream
        ("viadb.edge.svc.cluster.local.", "AAAA"),  # chased upstream behind an in-zone CNAME
        ("cluster.local.", "NS"),  # depends on the host's addresses
        ("ns.dns.cluster.local.", "A"),
        ("example.com.", "A"),  # not ours
        ("30.1.244.10.in-addr.arpa.", "PTR"),  # fell through
    ],
)
async def test_does_not_offer_other_replies(qname: str, qtype: str) -> None:
    _, w = await ask(reference(), qname, qtype)
    assert w.written and w.offer is None


async def test_store_changes_invalidate_offers() -> None:
    s = reference()
    slot = s.plugin.slots["cluster.local."]
    _, w = await ask(s, "new.prod.svc.cluster.local.")
    assert w.rcode == rc.NXDOMAIN and w.offer is not None
    before = w.offer.generation
    svc = from_api(
        Kind.SERVICE,
        {
            "metadata": {"name": "new", "namespace": "prod"},
            "spec": {"clusterIP": "10.96.9.9", "ports": [{"port": 80}]},
        },
    )
    assert svc is not None
    s.store.apply(Kind.SERVICE, "ADDED", svc)
    assert s.generations.generation(slot) > before
    _, w = await ask(s, "new.prod.svc.cluster.local.")
    Case(
        qname="new.prod.svc.cluster.local.",
        flags=AA,
        answer=["new.prod.svc.cluster.local. 30 IN A 10.96.9.9"],
    ).check(w.reply())
    assert w.offer == Offer(slot, s.generations.generation(slot))


async def test_a_new_instance_invalidates_its_predecessors_offers() -> None:
    generations = Generations()
    config = kubernetes_config(reference_corefile())
    first = Kubernetes(config, load_store(REFERENCE_YAML), None, None, lambda: [], generations)
    slot = first.slots["cluster.local."]
    before = generations.generation(slot)
    second = Kubernetes(config, load_store(REFERENCE_YAML), None, None, lambda: [], generations)
    assert second.slots["cluster.local."] == slot and generations.generation(slot) > before


async def test_without_generations_nothing_is_offered() -> None:
    config = kubernetes_config(reference_corefile())
    plugin = Kubernetes(config, load_store(REFERENCE_YAML), Upstream(), None, lambda: [])
    req = make_request("api.prod.svc.cluster.local.")
    w = RecordingWriter(req)
    await plugin.serve(req, w)
    assert w.written and w.offer is None


# -- changes in the store ----------------------------------------------------------------------


async def test_answers_follow_the_store_and_the_serial_moves() -> None:
    clock = [1_700_000_000.0]
    store = load_store(REFERENCE_YAML)
    store.clock = lambda: clock[0]
    s = make_plugin(reference_corefile(), store)
    _, w = await ask(s, "web.prod.svc.cluster.local.", "AAAA")
    assert w.reply() is not None and len(w.reply().rr) == 1  # type: ignore[union-attr]
    clock[0] += 60
    slice_ = from_api(
        Kind.ENDPOINTSLICE,
        {
            "metadata": {
                "name": "web-v6-p3n7c",
                "namespace": "prod",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv6",
            "endpoints": [{"addresses": ["fd00:10:244::c"]}, {"addresses": ["fd00:10:244::d"]}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    )
    assert slice_ is not None
    store.apply(Kind.ENDPOINTSLICE, "MODIFIED", slice_)
    _, w = await ask(s, "web.prod.svc.cluster.local.", "AAAA")
    Case(
        qname="web.prod.svc.cluster.local.",
        qtype="AAAA",
        flags=AA,
        answer=[
            "web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::c",
            "web.prod.svc.cluster.local. 30 IN AAAA fd00:10:244::d",
        ],
    ).check(w.reply())
    store.apply(Kind.NAMESPACE, "DELETED", from_api(Kind.NAMESPACE, {"metadata": {"name": "prod"}}))  # type: ignore[arg-type]
    _, w = await ask(s, "web.prod.svc.cluster.local.", "AAAA")
    Case(
        qname="web.prod.svc.cluster.local.",
        qtype="AAAA",
        rcode="NXDOMAIN",
        flags=AA,
        ns=[soa(serial=1_700_000_060)],
    ).check(w.reply())


# -- the default own-address hook ---------------------------------------------------------------


def test_listening_addresses_use_the_block_listen_list() -> None:
    block = BlockSettings(
        0,
        tuple(parse_key(".", 53)),
        "Corefile",
        1,
        (),
        listen=["127.0.0.1", "::1", "10.244.0.2", "fe80::1%eth0", "10.244.0.2"],
    )
    assert listening_addresses(block)() == ["10.244.0.2", "fe80::1"]


def test_listening_addresses_of_a_wildcard_listener_are_non_loopback() -> None:
    block = BlockSettings(0, tuple(parse_key(".", 53)), "Corefile", 1, ())
    found = listening_addresses(block)()
    assert all(not ipaddress.ip_address(a).is_loopback for a in found)
    assert len(found) == len(set(found))
    explicit = BlockSettings(0, tuple(parse_key(".", 53)), "Corefile", 1, (), listen=["0.0.0.0"])
    assert listening_addresses(explicit)() == found
