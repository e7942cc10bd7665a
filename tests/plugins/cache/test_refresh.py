"""Background work of the cache: prefetch, serve_stale (immediate and verify), shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from clusterdns.dnsutil import rcode as rc
from tests.dnstest import TIMEOUT_S, Case, flags_of
from tests.plugins.cache.helpers import Answer, Rig, labels, rig, soa, ttls

NAME = "p.example."


def numbered(n: int) -> Answer:
    """Call n answers 192.0.2.n, so a test sees which fetch an answer came from."""
    return Answer(answer=[f"p.example. 3600 IN A 192.0.2.{n}"])


def first_then(failure: Answer) -> Callable[[int], Answer]:
    """Answer on the first call, then fail as `failure` says."""

    def answer(n: int) -> Answer:
        return numbered(1) if n == 1 else failure

    return answer


def address(msg: object) -> str:
    rrs = getattr(msg, "rr", [])
    assert rrs, f"no answer in {msg}"
    return str(rrs[0].rdata)


async def wait_called(r: Rig) -> None:
    await asyncio.wait_for(r.backend.called.wait(), TIMEOUT_S)


# -- prefetch ------------------------------------------------------------------------------------


async def test_prefetch_refreshes_a_popular_entry_near_expiry() -> None:
    r = rig("cache 30 {\n prefetch 2\n }", {NAME: numbered})
    await r.reply(NAME)  # t=0 miss, TTL 30; threshold ceil(10% of 30) = 3
    r.clock.advance(10)
    await r.reply(NAME)  # hit 1
    r.clock.advance(10)
    await r.reply(NAME)  # hit 2, TTL 10: not low enough
    assert r.backend.count(NAME) == 1
    r.backend.called.clear()
    r.clock.advance(7)
    old = await r.reply(NAME)  # hit 3, TTL 3: prefetch in the background
    assert address(old) == "192.0.2.1" and ttls(old) == [3]
    await wait_called(r)
    await r.cache.idle()
    assert r.backend.count(NAME) == 2
    assert r.cache.metrics.prefetch.get(labels()) == 1
    refreshed = r.backend.calls[-1]
    assert refreshed.proto == "tcp" and refreshed.msg.header.ad == 1
    r.clock.advance(1)
    new = await r.reply(NAME)
    assert address(new) == "192.0.2.2" and ttls(new) == [29]
    assert "aa" in flags_of(new)
    assert r.backend.count(NAME) == 2
    assert r.cache.exists((NAME, 1, 1, False, False)) is not None


async def test_no_prefetch_below_amount() -> None:
    r = rig("cache 30 {\n prefetch 5\n }", {NAME: numbered})
    for step in (0, 10, 10, 7, 2):
        r.clock.advance(step)
        await r.reply(NAME)
    await r.cache.idle()
    assert r.backend.count(NAME) == 1
    assert r.cache.metrics.prefetch.get(labels()) == 0


async def test_a_gap_longer_than_duration_resets_the_hit_count() -> None:
    r = rig("cache 30 {\n prefetch 2 5s 10%\n }", {NAME: numbered})
    for step in (0, 10, 10, 7):  # gaps of 10, 10, 7 s: each hit starts counting at 1
        r.clock.advance(step)
        await r.reply(NAME)
    await r.cache.idle()
    assert r.backend.count(NAME) == 1
    r.clock.advance(1)  # a second hit 1 s later: 2 hits, TTL 2 <= 3
    await r.reply(NAME)
    await r.cache.idle()
    assert r.backend.count(NAME) == 2


async def test_at_most_one_prefetch_per_entry() -> None:
    r = rig("cache 30 {\n prefetch 1 1m 50%\n }", {NAME: numbered})
    await r.reply(NAME)
    r.backend.gate = asyncio.Event()
    r.backend.called.clear()
    r.clock.advance(16)  # TTL 14 <= 15
    await r.reply(NAME)
    await wait_called(r)
    for _ in range(5):
        r.clock.advance(1)
        await r.reply(NAME)
    assert r.backend.count(NAME) == 2
    assert len(r.cache.tasks) == 1
    assert r.cache.metrics.prefetch.get(labels()) == 1
    r.backend.gate.set()
    await r.cache.idle()
    assert r.backend.count(NAME) == 2
    assert address(await r.reply(NAME)) == "192.0.2.2"


async def test_prefetch_keeps_do_and_cd_of_the_entry() -> None:
    r = rig("cache 30 {\n prefetch 1 1m 90%\n }", {NAME: numbered})
    await r.reply(NAME, do=True, cd=True)
    r.clock.advance(4)
    await r.reply(NAME, do=True, cd=True)
    await r.cache.idle()
    call = r.backend.calls[-1]
    assert call.do and call.msg.header.cd == 1
    assert address(await r.reply(NAME, do=True, cd=True)) == "192.0.2.2"
    assert r.backend.count(NAME) == 2


async def test_close_cancels_a_pending_prefetch() -> None:
    r = rig("cache 30 {\n prefetch 1 1m 90%\n }", {NAME: numbered})
    await r.reply(NAME)
    r.backend.gate = asyncio.Event()
    r.backend.called.clear()
    r.clock.advance(4)
    await r.reply(NAME)
    await wait_called(r)
    (task,) = r.cache.tasks
    await r.cache.close()
    assert task.cancelled() and not r.cache.tasks
    entry = r.cache.exists((NAME, 1, 1, False, False))
    assert entry is not None and not entry.refreshing
    r.clock.advance(1)
    await r.reply(NAME)  # closed: no new background work
    assert not r.cache.tasks


# -- serve_stale immediate -----------------------------------------------------------------------


async def test_serve_stale_immediate_when_the_backend_fails() -> None:
    def backend(n: int) -> Answer:
        if n == 1:
            return numbered(1)
        if n <= 3:
            return Answer(rcode=rc.SERVFAIL, write=False)  # a forward timeout
        return numbered(n)

    r = rig("cache 30 {\n serve_stale\n }", {NAME: backend})
    await r.reply(NAME)
    r.clock.advance(40)
    stale = await r.reply(NAME)
    Case(qname=NAME, answer=["p.example. 0 IN A 192.0.2.1"], flags="qr aa rd ra").check(stale)
    await r.cache.idle()
    assert r.backend.count(NAME) == 2, "a background refresh was tried"
    r.clock.advance(1)
    assert address(await r.reply(NAME)) == "192.0.2.1"  # still stale; refresh 3 fails too
    await r.cache.idle()
    r.clock.advance(1)
    assert address(await r.reply(NAME)) == "192.0.2.1"  # stale; refresh 4 succeeds
    await r.cache.idle()
    r.clock.advance(1)
    fresh = await r.reply(NAME)
    assert address(fresh) == "192.0.2.4" and ttls(fresh) == [29]
    assert r.cache.metrics.served_stale.get(labels()) == 3
    assert r.cache.metrics.prefetch.get(labels()) == 3


async def test_serve_stale_response_ttl() -> None:
    r = rig(
        "cache 30 {\n serve_stale 1h immediate 30s\n }",
        {NAME: first_then(Answer(rcode=rc.SERVFAIL, write=False))},
    )
    await r.reply(NAME)
    r.clock.advance(100)
    assert ttls(await r.reply(NAME)) == [30]
    await r.cache.idle()


async def test_serve_stale_with_keepttl_serves_the_stored_ttl() -> None:
    r = rig(
        "cache 30 {\n serve_stale\n keepttl\n }",
        {NAME: first_then(Answer(rcode=rc.SERVFAIL, write=False))},
    )
    await r.reply(NAME)
    r.clock.advance(100)
    assert ttls(await r.reply(NAME)) == [30]
    await r.cache.idle()


async def test_stale_entries_end_after_the_stale_duration() -> None:
    r = rig(
        "cache 30 {\n serve_stale 10s\n }",
        {NAME: first_then(Answer(rcode=rc.SERVFAIL, write=False))},
    )
    await r.reply(NAME)
    r.clock.advance(39)  # 9 s past expiry
    assert address(await r.reply(NAME)) == "192.0.2.1"
    await r.cache.idle()
    r.clock.advance(1)  # 10 s past expiry: gone
    code, w = await r.ask(NAME)
    assert code == rc.SERVFAIL and not w.written
    assert r.cache.metrics.misses.get(labels()) == 2


async def test_failure_recheck_throttles_refreshes() -> None:
    r = rig(
        "cache 30 {\n serve_stale 1h immediate 0 30s\n }",
        {NAME: first_then(Answer(rcode=rc.REFUSED))},
    )
    await r.reply(NAME)
    r.clock.advance(40)
    await r.reply(NAME)
    await r.cache.idle()
    assert r.backend.count(NAME) == 2
    r.clock.advance(29)
    assert ttls(await r.reply(NAME)) == [0]
    await r.cache.idle()
    assert r.backend.count(NAME) == 2, "no retry within FAILURE_RECHECK"
    r.clock.advance(1)
    await r.reply(NAME)
    await r.cache.idle()
    assert r.backend.count(NAME) == 3


async def test_stale_refresh_with_nxdomain_replaces_the_answer() -> None:
    r = rig(
        "cache 30 {\n serve_stale\n }",
        {NAME: first_then(Answer(rcode=rc.NXDOMAIN, ns=[soa(60)]))},
    )
    await r.reply(NAME)
    r.clock.advance(40)
    assert address(await r.reply(NAME)) == "192.0.2.1"
    await r.cache.idle()
    reply = await r.reply(NAME)
    assert reply.header.rcode == rc.NXDOMAIN, "the denial entry is looked up first"
    assert r.backend.count(NAME) == 2


async def test_prefer_positive_keeps_serving_the_answer() -> None:
    r = rig(
        "cache 30 {\n serve_stale\n serve_stale_policy prefer_positive\n }",
        {NAME: first_then(Answer(rcode=rc.NXDOMAIN, ns=[soa(60)]))},
    )
    await r.reply(NAME)
    r.clock.advance(40)
    assert address(await r.reply(NAME)) == "192.0.2.1"
    await r.cache.idle()
    assert len(r.cache.denial) == 1, "the NXDOMAIN was stored..."
    r.clock.advance(1)
    assert address(await r.reply(NAME)) == "192.0.2.1", "...but the answer wins"


async def test_prefer_positive_survives_a_non_answering_refresh() -> None:
    r = rig(
        "cache 30 {\n serve_stale\n serve_stale_policy prefer_positive\n }",
        {NAME: first_then(Answer())},  # an empty NOERROR: positive, but not an answer
    )
    await r.reply(NAME)
    r.clock.advance(40)
    await r.reply(NAME)
    await r.cache.idle()
    stored = r.cache.success.find((NAME, 1, 1, False, False))
    assert stored is not None and not stored.answering
    assert stored.last_known_good is not None
    r.clock.advance(1)
    assert address(await r.reply(NAME)) == "192.0.2.1"


# -- serve_stale verify --------------------------------------------------------------------------


async def test_verify_serves_stale_only_after_a_failed_refresh() -> None:
    def backend(n: int) -> Answer:
        if n == 1:
            return numbered(1)
        if n == 2:
            return Answer(rcode=rc.SERVFAIL, write=False)
        if n == 3:
            return Answer(rcode=rc.REFUSED)  # written, but not a usable refresh
        if n == 4:
            return Answer(raises=True)
        return Answer(rcode=rc.NXDOMAIN, ns=[soa(60)])

    r = rig("cache 30 {\n serve_stale 1h verify\n }", {NAME: backend})
    await r.reply(NAME)
    r.clock.advance(40)
    for calls in (2, 3, 4):
        reply = await r.reply(NAME)
        assert r.backend.count(NAME) == calls, "the refresh ran before the reply"
        Case(qname=NAME, answer=["p.example. 0 IN A 192.0.2.1"], flags="qr aa rd ra").check(reply)
    assert not r.cache.tasks
    assert r.cache.metrics.served_stale.get(labels()) == 3
    fresh = await r.reply(NAME)  # call 5: NXDOMAIN is a valid refresh and goes to the client
    Case(qname=NAME, rcode="NXDOMAIN", ns=[soa(30)]).check(fresh)  # capped at 30
    assert r.cache.metrics.served_stale.get(labels()) == 3
    assert len(r.cache.denial) == 1


async def test_verify_with_a_successful_refresh_answers_fresh() -> None:
    r = rig("cache 30 {\n serve_stale 1h verify\n }", {NAME: numbered})
    await r.reply(NAME)
    r.clock.advance(40)
    _, w = await r.ask(NAME)
    reply = w.reply()
    assert reply is not None
    assert address(reply) == "192.0.2.2" and ttls(reply) == [30]
    assert w.plugin == "backend"
    assert r.cache.metrics.served_stale.get(labels()) == 0


async def test_verify_timeout_serves_stale_and_refreshes_in_the_background() -> None:
    r = rig("cache 30 {\n serve_stale 1h verify 20ms\n }", {NAME: numbered})
    await r.reply(NAME)
    r.clock.advance(40)
    r.backend.gate = asyncio.Event()
    stale = await r.reply(NAME)  # the backend is held: after 20 ms the stale entry is served
    assert address(stale) == "192.0.2.1" and ttls(stale) == [0]
    assert len(r.cache.tasks) == 1
    r.backend.gate.set()
    await r.cache.idle()
    fresh = await r.reply(NAME)
    assert address(fresh) == "192.0.2.2" and ttls(fresh) == [30]
    assert r.backend.count(NAME) == 2


async def test_verify_timeout_answers_from_the_refresh_when_it_is_in_time() -> None:
    r = rig("cache 30 {\n serve_stale 1h verify 5s\n }", {NAME: numbered})
    await r.reply(NAME)
    r.clock.advance(40)
    _, w = await r.ask(NAME)
    reply = w.reply()
    assert reply is not None
    assert address(reply) == "192.0.2.2" and ttls(reply) == [30]
    assert w.plugin == "cache" and "aa" in flags_of(reply)
    assert r.cache.metrics.served_stale.get(labels()) == 0


async def test_verify_failure_recheck() -> None:
    r = rig(
        "cache 30 {\n serve_stale 1h verify 0 0 30s\n }",
        {NAME: first_then(Answer(rcode=rc.SERVFAIL, write=False))},
    )
    await r.reply(NAME)
    r.clock.advance(40)
    await r.reply(NAME)
    assert r.backend.count(NAME) == 2
    r.clock.advance(10)
    assert address(await r.reply(NAME)) == "192.0.2.1"
    assert r.backend.count(NAME) == 2, "no verify within FAILURE_RECHECK"
    r.clock.advance(20)
    await r.reply(NAME)
    assert r.backend.count(NAME) == 3


async def test_a_crash_in_a_background_refresh_is_logged_and_releases_the_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def backend(n: int) -> Answer:
        if n == 1:
            return numbered(1)
        if n == 2:
            return Answer(raises=True)  # a PluginError: an ordinary failure, not logged
        raise RuntimeError("bug in the backend")

    r = rig("cache 30 {\n prefetch 1 1m 90%\n }", {NAME: backend})
    await r.reply(NAME)
    key = (NAME, 1, 1, False, False)
    with caplog.at_level(logging.INFO, logger="clusterdns.plugins.cache"):
        for step in (4, 1):  # TTL 26, then 25: below 90% of 30, so each hit prefetches
            r.clock.advance(step)
            await r.reply(NAME)
            await r.cache.idle()
            entry = r.cache.exists(key)
            assert entry is not None and not entry.refreshing
    assert r.backend.count(NAME) == 3
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert [rec.getMessage() for rec in errors] == ["refresh of p.example. A failed"]
    assert errors[0].exc_info is not None
