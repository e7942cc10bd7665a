"""Cache behaviour (spec §8.2, §8.3) in front of a scripted backend, with a fake clock."""

from __future__ import annotations

import asyncio
import random
from typing import ClassVar

import pytest
from dnslib import RR, A
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.request import Request
from clusterdns.chain.writer import CaptureWriter, ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.metrics import Metrics
from clusterdns.plugins.cache import Cache, metrics_for
from clusterdns.plugins.cache.store import Entry
from tests.dnstest import LOCAL, REMOTE, Case, RecordingWriter, flags_of
from tests.plugins.cache.helpers import (
    SOA_CLUSTER,
    Answer,
    FakeClock,
    cache_config,
    labels,
    query,
    rig,
    soa,
    ttls,
    typed,
)

EXAMPLE_COM = {"example.com.": Answer(answer=["example.com. 3600 IN A 93.184.215.14"])}


# -- spec §8.3 -----------------------------------------------------------------------------------


async def test_spec_example_countdown_and_refetch() -> None:
    r = rig("cache 30", EXAMPLE_COM)
    first = await r.reply("example.com.")
    Case(
        qname="example.com.",
        answer=["example.com. 30 IN A 93.184.215.14"],
        flags="qr rd ra",
    ).check(first)
    assert r.backend.count("example.com.") == 1

    r.clock.advance(7)
    second = await r.reply("example.com.")
    Case(
        qname="example.com.",
        answer=["example.com. 23 IN A 93.184.215.14"],
        flags="qr aa rd ra",
    ).check(second)
    assert r.backend.count("example.com.") == 1

    r.clock.advance(24)  # t=31
    third = await r.reply("example.com.")
    assert ttls(third) == [30]
    assert r.backend.count("example.com.") == 2


async def test_entry_expires_exactly_at_its_ttl() -> None:
    r = rig("cache 30", EXAMPLE_COM)
    await r.reply("example.com.")
    r.clock.advance(29.9)
    assert ttls(await r.reply("example.com.")) == [1]
    r.clock.advance(0.1)  # t=30: remaining 0 -> expired
    assert ttls(await r.reply("example.com.")) == [30]
    assert r.backend.count("example.com.") == 2


async def test_hit_takes_id_question_and_rd_cd_from_the_current_query() -> None:
    r = rig("cache 30", EXAMPLE_COM)
    await r.reply("example.com.")
    req = query("example.com.", rd=False)
    w = RecordingWriter(req)
    assert await r.cache.serve(req, w) == rc.NOERROR
    reply = w.reply()
    assert reply is not None
    assert reply.header.id == req.id
    assert flags_of(reply) == {"qr", "aa", "ra"}
    assert w.plugin == "cache"
    assert r.backend.count("example.com.") == 1


# -- durations and the TTL rewrite ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "record_ttl", "want_ttl"),
    [
        ("cache 30", 3600, 30),
        ("cache 30", 2, 5),
        ("cache 30", 0, 5),
        ("cache", 7200, 3600),
        ("cache", 100, 100),
        ("cache 30 {\n success 1024 60 10\n }", 2, 10),
        ("cache 30 {\n success 1024 60 10\n }", 3600, 60),
    ],
)
async def test_duration_is_clamped_and_applied_to_the_first_reply(
    line: str, record_ttl: int, want_ttl: int
) -> None:
    r = rig(line, {"a.example.": Answer(answer=[f"a.example. {record_ttl} IN A 192.0.2.1"])})
    assert ttls(await r.reply("a.example.")) == [want_ttl]
    r.clock.advance(want_ttl - 1)
    assert ttls(await r.reply("a.example.")) == [1]
    assert r.backend.count("a.example.") == 1
    r.clock.advance(1)
    await r.reply("a.example.")
    assert r.backend.count("a.example.") == 2


async def test_smallest_ttl_of_all_sections_wins_and_opt_is_ignored() -> None:
    r = rig(
        "cache",
        {
            "mx.example.": Answer(
                answer=["mx.example. 300 IN MX 10 mail.example."],
                ns=["example. 600 IN NS ns.example."],
                extra=["mail.example. 60 IN A 192.0.2.25"],
                opt=True,
            )
        },
    )
    reply = await r.reply("mx.example.", "MX")
    assert ttls(reply) == [60, 60, 60]
    assert not [rr for rr in reply.ar if rr.rtype == rc.OPT], "the backend's OPT is dropped"


async def test_min_ttl_zero_means_not_cached_but_still_rewritten() -> None:
    r = rig(
        "cache {\n success 1024 60 0\n }",
        {"z.example.": Answer(answer=["z.example. 0 IN A 192.0.2.1"])},
    )
    assert ttls(await r.reply("z.example.")) == [0]
    assert ttls(await r.reply("z.example.")) == [0]
    assert r.backend.count("z.example.") == 2
    assert len(r.cache.success) == 0


async def test_cname_chain_answer_leaves_with_one_ttl() -> None:
    # An ExternalName reply: CNAME with the cluster TTL, target A with the upstream TTL.
    r = rig(
        "cache 30",
        {
            "db.prod.svc.cluster.local.": Answer(
                aa=True,
                ra=False,
                answer=[
                    "db.prod.svc.cluster.local. 30 IN CNAME db.example.com.",
                    "db.example.com. 300 IN A 192.0.2.50",
                ],
            )
        },
    )
    assert ttls(await r.reply("db.prod.svc.cluster.local.")) == [30, 30]
    assert len(r.cache.success) == 1


# -- negative caching ----------------------------------------------------------------------------


async def test_nxdomain_with_soa_is_cached_with_the_soa_ttl() -> None:
    r = rig(
        "cache 30",
        {"new.example.org.": Answer(rcode=rc.NXDOMAIN, aa=True, ra=False, ns=[soa(20)])},
    )
    first = await r.reply("new.example.org.")
    Case(qname="new.example.org.", rcode="NXDOMAIN", ns=[soa(20)], flags="qr aa rd").check(first)
    r.clock.advance(6)
    second = await r.reply("new.example.org.")
    Case(qname="new.example.org.", rcode="NXDOMAIN", ns=[soa(14)], flags="qr aa rd").check(second)
    assert r.backend.count("new.example.org.") == 1
    assert r.metrics is not None
    hits = r.cache.metrics.hits
    assert hits.get(typed("denial")) == 1 and hits.get(typed("success")) == 0


async def test_denial_is_capped_at_1800_by_default() -> None:
    r = rig("cache", {"gone.example.org.": Answer(rcode=rc.NXDOMAIN, ns=[soa(86400)])})
    assert ttls(await r.reply("gone.example.org.")) == [1800]


async def test_nodata_is_cached() -> None:
    r = rig("cache 30", {"v4only.example.org.": Answer(ns=[soa(60)])})
    first = await r.reply("v4only.example.org.", "AAAA")
    Case(qname="v4only.example.org.", qtype="AAAA", ns=[soa(30)]).check(first)
    r.clock.advance(10)
    assert ttls(await r.reply("v4only.example.org.", "AAAA")) == [20]
    assert r.backend.count("v4only.example.org.") == 1
    assert len(r.cache.denial) == 1 and len(r.cache.success) == 0


async def test_cname_without_the_type_and_with_soa_is_nodata() -> None:
    r = rig(
        "cache 30",
        {
            "alias.example.org.": Answer(
                answer=["alias.example.org. 30 IN CNAME target.example.org."], ns=[soa(30)]
            )
        },
    )
    await r.reply("alias.example.org.", "TXT")
    await r.reply("alias.example.org.", "TXT")
    assert r.backend.count("alias.example.org.") == 1
    assert len(r.cache.denial) == 1


async def test_cname_without_the_type_and_without_soa_is_not_cached() -> None:
    r = rig(
        "cache 30",
        {"alias.example.org.": Answer(answer=["alias.example.org. 300 IN CNAME target.example."])},
    )
    assert ttls(await r.reply("alias.example.org.")) == [30]
    await r.reply("alias.example.org.")
    assert r.backend.count("alias.example.org.") == 2
    assert len(r.cache.success) == len(r.cache.denial) == 0


@pytest.mark.parametrize(
    "answer",
    [
        Answer(ns=["example.org. 3600 IN NS ns1.example.org."]),  # referral
        Answer(),  # completely empty NOERROR
        Answer(extra=["{qname} 0 IN A 10.240.0.1"]),  # data only in additional (whoami)
    ],
    ids=["referral", "empty", "additional-only"],
)
async def test_referral_and_empty_replies_live_5_seconds(answer: Answer) -> None:
    r = rig("cache 30", {"x.example.org.": answer})
    first = await r.reply("x.example.org.")
    assert all(t == 5 for t in ttls(first))
    r.clock.advance(4)
    await r.reply("x.example.org.")
    assert r.backend.count("x.example.org.") == 1
    r.clock.advance(1)
    await r.reply("x.example.org.")
    assert r.backend.count("x.example.org.") == 2
    assert r.cache.metrics.hits.get(typed("success")) == 1


async def test_servfail_written_is_cached_5_seconds() -> None:
    r = rig("cache 30", {"broken.example.": Answer(rcode=rc.SERVFAIL)})
    first = await r.reply("broken.example.")
    assert rc.rcode_name(first.header.rcode) == "SERVFAIL"
    r.clock.advance(4)
    second = await r.reply("broken.example.")
    assert rc.rcode_name(second.header.rcode) == "SERVFAIL"
    assert "aa" in flags_of(second)
    assert r.backend.count("broken.example.") == 1
    r.clock.advance(1)
    await r.reply("broken.example.")
    assert r.backend.count("broken.example.") == 2


async def test_servfail_duration_option() -> None:
    r = rig("cache 30 {\n servfail 2s\n }", {"broken.example.": Answer(rcode=rc.NOTIMP)})
    await r.reply("broken.example.")
    r.clock.advance(1)
    await r.reply("broken.example.")
    assert r.backend.count("broken.example.") == 1
    r.clock.advance(1)
    await r.reply("broken.example.")
    assert r.backend.count("broken.example.") == 2


async def test_servfail_0_disables_servfail_caching() -> None:
    r = rig("cache 30 {\n servfail 0\n }", {"broken.example.": Answer(rcode=rc.SERVFAIL)})
    await r.reply("broken.example.")
    await r.reply("broken.example.")
    assert r.backend.count("broken.example.") == 2
    assert len(r.cache.denial) == 0


async def test_failure_without_a_reply_is_not_cached_and_not_written() -> None:
    r = rig("cache 30", {"timeout.example.": Answer(rcode=rc.SERVFAIL, write=False)})
    code, w = await r.ask("timeout.example.")
    assert code == rc.SERVFAIL and not w.written
    code, w = await r.ask("timeout.example.")
    assert code == rc.SERVFAIL and not w.written
    assert r.backend.count("timeout.example.") == 2


@pytest.mark.parametrize(
    "answer",
    [
        Answer(rcode=rc.REFUSED),
        Answer(rcode=rc.FORMERR),
        Answer(rcode=rc.NXDOMAIN),  # no SOA
        Answer(rcode=rc.NXDOMAIN, answer=["x.example.org. 60 IN A 192.0.2.1"], ns=[soa(60)]),
        Answer(tc=True, answer=["x.example.org. 60 IN A 192.0.2.1"]),
        Answer(rcode=6, ns=[soa(60)]),  # YXDOMAIN
    ],
    ids=["refused", "formerr", "nxdomain-no-soa", "nxdomain-with-answer", "truncated", "yxdomain"],
)
async def test_not_cached(answer: Answer) -> None:
    r = rig("cache 30", {"x.example.org.": answer})
    first = await r.reply("x.example.org.")
    assert first.header.rcode == answer.rcode
    assert first.header.tc == int(answer.tc)
    await r.reply("x.example.org.")
    assert r.backend.count("x.example.org.") == 2
    assert len(r.cache.success) == len(r.cache.denial) == 0


async def test_question_mismatch_is_dropped_and_counted() -> None:
    r = rig(
        "cache 30",
        {
            "asked.example.": Answer(
                question="other.example.", answer=["other.example. 60 IN A 192.0.2.1"]
            )
        },
    )
    await r.reply("asked.example.")
    await r.reply("asked.example.")
    assert r.backend.count("asked.example.") == 2
    assert r.cache.metrics.drops.get(labels()) == 2
    assert len(r.cache.success) == 0


# -- disable (both kubeadm forms) ----------------------------------------------------------------

KUBEADM_NEW = "cache 30 {\n disable success cluster.local\n disable denial cluster.local\n }"
CLUSTER = {
    "api.prod.svc.cluster.local.": Answer(
        aa=True, ra=False, answer=["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"]
    ),
    "zero.prod.svc.cluster.local.": Answer(
        aa=True, ra=False, answer=["zero.prod.svc.cluster.local. 0 IN A 10.96.9.9"]
    ),
    "new.prod.svc.cluster.local.": Answer(
        rcode=rc.NXDOMAIN, aa=True, ra=False, ns=[soa(30, SOA_CLUSTER)]
    ),
    **EXAMPLE_COM,
}


async def test_old_kubeadm_form_caches_cluster_answers() -> None:
    r = rig("cache 30", CLUSTER)
    await r.reply("api.prod.svc.cluster.local.")
    r.clock.advance(10)
    second = await r.reply("api.prod.svc.cluster.local.")
    Case(
        qname="api.prod.svc.cluster.local.",
        answer=["api.prod.svc.cluster.local. 20 IN A 10.96.5.5"],
        flags="qr aa rd",
    ).check(second)
    await r.reply("new.prod.svc.cluster.local.")
    r.clock.advance(6)
    assert (await r.reply("new.prod.svc.cluster.local.")).header.rcode == rc.NXDOMAIN
    assert r.backend.count("api.prod.svc.cluster.local.") == 1
    assert r.backend.count("new.prod.svc.cluster.local.") == 1


async def test_new_kubeadm_form_rewrites_but_does_not_store_cluster_answers() -> None:
    r = rig(KUBEADM_NEW, CLUSTER)
    for _ in range(2):
        reply = await r.reply("api.prod.svc.cluster.local.")
        Case(
            qname="api.prod.svc.cluster.local.",
            answer=["api.prod.svc.cluster.local. 30 IN A 10.96.5.5"],
            flags="qr aa rd",
        ).check(reply)
        r.clock.advance(10)
    assert r.backend.count("api.prod.svc.cluster.local.") == 2
    # ttl 0 in the cluster still leaves with 5 (quirk Q11), and is not stored either.
    assert ttls(await r.reply("zero.prod.svc.cluster.local.")) == [5]
    assert ttls(await r.reply("zero.prod.svc.cluster.local.")) == [5]
    assert r.backend.count("zero.prod.svc.cluster.local.") == 2
    await r.reply("new.prod.svc.cluster.local.")
    await r.reply("new.prod.svc.cluster.local.")
    assert r.backend.count("new.prod.svc.cluster.local.") == 2
    assert len(r.cache.success) == len(r.cache.denial) == 0
    # Everything else is cached as before.
    await r.reply("example.com.")
    r.clock.advance(7)
    assert ttls(await r.reply("example.com.")) == [23]
    assert r.backend.count("example.com.") == 1


async def test_disable_without_zones_covers_everything() -> None:
    r = rig("cache 30 {\n disable denial\n }", CLUSTER)
    await r.reply("new.prod.svc.cluster.local.")
    await r.reply("new.prod.svc.cluster.local.")
    assert r.backend.count("new.prod.svc.cluster.local.") == 2
    await r.reply("example.com.")
    await r.reply("example.com.")
    assert r.backend.count("example.com.") == 1


# -- the key -------------------------------------------------------------------------------------


async def test_key_distinguishes_do_and_cd() -> None:
    r = rig("cache 30", EXAMPLE_COM)
    variants = [{}, {"do": True}, {"cd": True}, {"do": True, "cd": True}]
    for flags in variants:
        await r.reply("example.com.", "A", **flags)
    assert r.backend.count("example.com.") == 4
    for flags in variants:
        await r.reply("example.com.", "A", **flags)
    assert r.backend.count("example.com.") == 4
    assert len(r.cache.success) == 4
    # EDNS without DO shares the entry of a query without EDNS.
    await r.reply("example.com.", edns=True)
    assert r.backend.count("example.com.") == 4


async def test_cd_is_copied_to_a_hit() -> None:
    r = rig("cache 30", EXAMPLE_COM)
    await r.reply("example.com.", cd=True)
    hit = await r.reply("example.com.", cd=True)
    assert flags_of(hit) == {"qr", "aa", "rd", "ra", "cd"}


async def test_letter_case_shares_an_entry_and_keeps_the_stored_case() -> None:
    r = rig(
        "cache 30",
        {"www.example.org.": Answer(answer=["{qname} 300 IN A 192.0.2.80"])},
    )
    first = await r.reply("WWW.Example.ORG.")
    assert str(first.rr[0].rname) == "WWW.Example.ORG."
    second = await r.reply("www.example.org.")
    assert str(second.q.qname) == "www.example.org."
    assert str(second.rr[0].rname) == "WWW.Example.ORG."  # quirk Q15
    assert r.backend.count("www.example.org.") == 1


async def test_names_outside_the_cache_zones_pass_untouched() -> None:
    r = rig(
        "cache 30 example.org",
        {
            **EXAMPLE_COM,
            "www.example.org.": Answer(answer=["www.example.org. 300 IN A 192.0.2.80"]),
        },
        zones=(".",),
    )
    assert ttls(await r.reply("example.com.")) == [3600]
    assert ttls(await r.reply("example.com.")) == [3600]
    assert r.backend.count("example.com.") == 2
    assert ttls(await r.reply("www.example.org.")) == [30]
    assert r.cache.metrics.requests.get(labels(zones="example.org.")) == 1


# -- header bits ---------------------------------------------------------------------------------


async def test_ad_is_asked_for_kept_and_cleared_per_client() -> None:
    r = rig(
        "cache 30",
        {"signed.example.": Answer(ad=True, answer=["signed.example. 60 IN A 192.0.2.1"])},
    )
    plain = await r.reply("signed.example.")
    assert r.backend.calls[0].msg.header.ad == 1, "the chain is asked with AD set"
    assert "ad" not in flags_of(plain)
    with_ad = await r.reply("signed.example.", ad=True)
    assert flags_of(with_ad) == {"qr", "aa", "rd", "ra", "ad"}
    again_plain = await r.reply("signed.example.")
    assert "ad" not in flags_of(again_plain)
    assert r.backend.count("signed.example.") == 1
    dnssec = await r.reply("signed.example.", do=True)
    assert "ad" in flags_of(dnssec)


async def test_ra_as_stored() -> None:
    r = rig("cache 30", CLUSTER)
    await r.reply("api.prod.svc.cluster.local.")
    hit = await r.reply("api.prod.svc.cluster.local.")
    assert flags_of(hit) == {"qr", "aa", "rd"}


async def test_keepttl_serves_the_stored_ttl() -> None:
    r = rig("cache 30 {\n keepttl\n }", EXAMPLE_COM)
    await r.reply("example.com.")
    r.clock.advance(20)
    assert ttls(await r.reply("example.com.")) == [30]
    r.clock.advance(10)
    await r.reply("example.com.")
    assert r.backend.count("example.com.") == 2


async def test_the_backend_reply_object_is_not_changed() -> None:
    r = rig("cache 30", {"a.example.": Answer(answer=["a.example. 3600 IN A 192.0.2.1"], ad=True)})
    sent = await r.reply("a.example.")
    assert ttls(sent) == [30] and "ad" not in flags_of(sent)
    built = r.backend.written[0]
    assert ttls(built) == [3600] and built.header.ad == 1


# -- lookup order --------------------------------------------------------------------------------


async def test_a_prefetched_denial_wins_over_the_positive_entry() -> None:
    def flip(n: int) -> Answer:
        if n == 1:
            return Answer(answer=["flip.example. 60 IN A 192.0.2.1"])
        return Answer(rcode=rc.NXDOMAIN, ns=[soa(60)])

    r = rig("cache 30 {\n prefetch 1 1m 90%\n }", {"flip.example.": flip})
    await r.reply("flip.example.")  # stores the answer, TTL 30; prefetch below 27
    r.clock.advance(4)
    await r.reply("flip.example.")  # a hit that starts a prefetch; it brings NXDOMAIN
    await r.cache.idle()
    assert r.backend.count("flip.example.") == 2
    assert len(r.cache.denial) == 1 and len(r.cache.success) == 1
    reply = await r.reply("flip.example.")
    assert reply.header.rcode == rc.NXDOMAIN, "negative entries are looked up first"


def entry_with_rcode(code: int, now: float) -> Entry:
    msg = query("flip.example.").msg.reply()
    msg.header.rcode = code
    if code == rc.NXDOMAIN:
        msg.add_auth(*RR.fromZone(soa(60)))
    return Entry.from_reply(msg, ttl=30, now=now, answering=False)


async def test_a_cached_servfail_does_not_hide_a_positive_entry() -> None:
    r = rig("cache 30", {"flip.example.": Answer(answer=["flip.example. 60 IN A 192.0.2.1"])})
    await r.reply("flip.example.")
    key = ("flip.example.", 1, 1, False, False)
    r.cache.denial.put(key, entry_with_rcode(rc.SERVFAIL, r.clock()))
    served = await r.reply("flip.example.")
    assert served.header.rcode == rc.NOERROR and ttls(served) == [30]
    r.cache.denial.put(key, entry_with_rcode(rc.NXDOMAIN, r.clock()))
    served = await r.reply("flip.example.")
    assert served.header.rcode == rc.NXDOMAIN
    assert r.cache.metrics.hits.get(typed("success")) == 1
    assert r.cache.metrics.hits.get(typed("denial")) == 1
    assert r.backend.count("flip.example.") == 1


# -- capacity ------------------------------------------------------------------------------------


class Flood:
    """A fast backend for floods: odd-numbered names exist, even ones are NXDOMAIN with SOA."""

    name: ClassVar[str] = "flood"
    SOA_RR: ClassVar[RR] = RR.fromZone(soa(300))[0]

    def __init__(self) -> None:
        self.calls = 0

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls += 1
        if int(req.name.split(".", 1)[0][1:], 16) % 2:
            reply = req.reply(aa=False)
            reply.add_answer(RR(req.qname, rc.A, rdata=A("192.0.2.1"), ttl=300))
        else:
            reply = req.reply(aa=False, rcode=rc.NXDOMAIN)
            reply.add_auth(self.SOA_RR)
        w.write(reply, self.name)
        return int(reply.header.rcode)


def flood_cache(line: str) -> Cache:
    return Cache(cache_config(line), Flood(), metrics=metrics_for(Metrics()), clock=FakeClock())


async def test_capacity_bounds_memory_under_a_flood_of_random_names() -> None:
    cache = flood_cache("cache 30 {\n success 1024\n denial 1024\n }")
    rng = random.Random(7)
    names = {f"n{rng.getrandbits(64):x}.flood.example." for _ in range(20_000)}
    positive = sum(1 for n in names if int(n.split(".", 1)[0][1:], 16) % 2)
    for name in names:
        req = query(name)
        await cache.serve(req, CaptureWriter("udp", REMOTE, LOCAL))
        assert len(cache.success) <= 1024 and len(cache.denial) <= 1024
    assert len(cache.success) == 1024 and len(cache.denial) == 1024
    evictions = cache.metrics.evictions
    assert evictions.get(typed("success")) == positive - 1024
    assert evictions.get(typed("denial")) == len(names) - positive - 1024
    assert cache.metrics.entries.get(typed("success")) == 1024
    assert cache.metrics.entries.get(typed("denial")) == 1024


async def test_default_capacity_is_9984_per_class() -> None:
    cache = flood_cache("cache")
    for i in range(10_100):
        await cache.serve(
            query(f"n{2 * i + 1:x}.flood.example."), CaptureWriter("udp", REMOTE, LOCAL)
        )
    assert len(cache.success) == 9984
    assert cache.metrics.evictions.get(typed("success")) == 10_100 - 9984


async def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    table: dict[str, Answer] = {}
    r = rig("cache 30 {\n success 1024\n }", table)
    for i in range(1024):
        name = f"old{i}.example."
        table[name] = Answer(answer=[f"{name} 10 IN A 192.0.2.1"])
        await r.ask(name)
    r.clock.advance(10)
    table["new.example."] = Answer(answer=["new.example. 10 IN A 192.0.2.2"])
    await r.ask("new.example.")
    assert len(r.cache.success) == 1
    assert r.cache.metrics.evictions.get(typed("success")) == 0


# -- fast path -----------------------------------------------------------------------------------


async def test_fastpath_offers_are_dropped_for_stored_replies_and_kept_for_others() -> None:
    # A miss that is stored is never offered; nor is a hit of a cache built without
    # generations (the rig's); a reply passed through a disabled zone keeps the next plugin's
    # offer, with a hook that counts the lookup (request + miss) a replay stands for.
    offer = Offer(slot=0, generation=0)
    table = {
        "stored.example.org.": Answer(
            answer=["stored.example.org. 30 IN A 192.0.2.1"], offer=offer
        ),
        "api.prod.svc.cluster.local.": Answer(
            answer=["api.prod.svc.cluster.local. 0 IN A 10.96.5.5"], offer=offer
        ),
    }
    r = rig(KUBEADM_NEW, table)
    _, w = await r.ask("stored.example.org.")
    assert w.offer is None
    _, w = await r.ask("stored.example.org.")  # a hit is never offered
    assert w.offer is None
    _, w = await r.ask("api.prod.svc.cluster.local.")
    assert w.offer is not None
    assert (w.offer.slot, w.offer.generation, w.offer.expires) == (
        offer.slot,
        offer.generation,
        offer.expires,
    )
    assert len(w.offer.hits) == 1
    m = r.cache.metrics
    before = (m.requests.get(labels()), m.misses.get(labels()))
    w.offer.hits[0]("udp", 1)
    assert (m.requests.get(labels()), m.misses.get(labels())) == (before[0] + 1, before[1] + 1)
    reply = w.reply()
    assert reply is not None and ttls(reply) == [5]


# -- metrics -------------------------------------------------------------------------------------


async def test_metrics_values() -> None:
    r = rig(
        "cache 30",
        {
            **EXAMPLE_COM,
            "nx.example.com.": Answer(rcode=rc.NXDOMAIN, ns=[soa(60)]),
        },
    )
    await r.reply("example.com.")  # miss
    await r.reply("example.com.")  # hit success
    await r.reply("nx.example.com.")  # miss
    await r.reply("nx.example.com.")  # hit denial
    await r.reply("nx.example.com.")  # hit denial
    m = r.cache.metrics
    assert m.requests.get(labels()) == 5
    assert m.misses.get(labels()) == 2
    assert m.hits.get(typed("success")) == 1
    assert m.hits.get(typed("denial")) == 2
    assert m.entries.get(typed("success")) == 1
    assert m.entries.get(typed("denial")) == 1
    assert m.prefetch.get(labels()) == 0
    assert m.served_stale.get(labels()) == 0
    text = r.metrics.exposition().decode()
    assert (
        'coredns_cache_hits_total{server="dns://:53",type="denial",view="",zones="."} 2.0' in text
    )
    assert 'coredns_cache_requests_total{server="dns://:53",view="",zones="."} 5.0' in text
    assert 'coredns_cache_entries{server="dns://:53",type="success",view="",zones="."} 1.0' in text
    for name in (
        "coredns_cache_misses_total",
        "coredns_cache_prefetch_total",
        "coredns_cache_drops_total",
        "coredns_cache_served_stale_total",
        "coredns_cache_evictions_total",
    ):
        assert f"# TYPE {name} counter" in text


async def test_spec_example_service_created_while_nxdomain_is_cached() -> None:
    name = "new.prod.svc.cluster.local."
    created = Answer(aa=True, ra=False, answer=[f"{name} 30 IN A 10.96.8.8"])
    for line, at_t6 in (("cache 30", rc.NXDOMAIN), (KUBEADM_NEW, rc.NOERROR)):
        table = dict(CLUSTER)
        r = rig(line, table)
        assert (await r.reply(name)).header.rcode == rc.NXDOMAIN
        r.clock.advance(5)
        table[name] = created  # t=5: the service is created
        r.clock.advance(1)
        assert (await r.reply(name)).header.rcode == at_t6, line
        r.clock.advance(24)  # t=30: the cached NXDOMAIN has expired in the old form too
        assert (await r.reply(name)).header.rcode == rc.NOERROR


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Quarter seconds keep the clock arithmetic exact, so the model and the store agree to the bit.
@given(steps=st.lists(st.integers(min_value=0, max_value=160).map(lambda q: q / 4), max_size=25))
def test_ttl_countdown_matches_a_model(steps: list[float]) -> None:
    async def run() -> None:
        r = rig("cache 30", EXAMPLE_COM)
        stored_at: float | None = None
        calls = 0
        for step in steps:
            r.clock.advance(step)
            now = r.clock()
            if stored_at is None or now - stored_at >= 30:
                stored_at, calls, want = now, calls + 1, 30
            else:
                want = 30 - int(now - stored_at)
            reply = await r.reply("example.com.")
            assert ttls(reply) == [want]
            assert r.backend.count("example.com.") == calls

    asyncio.run(run())
