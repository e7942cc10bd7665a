"""`cache` setup: every option's valid forms and every error, with file and line."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from clusterdns.errors import CorefileErrors
from clusterdns.metrics import Metrics
from clusterdns.plugins import SETUP
from clusterdns.plugins.cache import SPEC, Cache, metrics_for
from clusterdns.plugins.cache.config import (
    CacheConfig,
    ClassConfig,
    Prefetch,
    ServeStale,
)
from tests.dnstest import build_config

ROOT = (".",)
DEFAULT = CacheConfig(zones=ROOT)


def corefile(body: str, keys: str = ".") -> str:
    return f"{keys} {{\n    {body}\n    whoami\n}}\n"


@dataclass(frozen=True, kw_only=True)
class Valid:
    body: str
    want: CacheConfig
    keys: str = "."

    def id(self) -> str:
        return self.body.replace("\n", ";")


VALID = [
    Valid(body="cache", want=DEFAULT),
    Valid(
        body="cache 30",
        want=CacheConfig(
            zones=ROOT, success=ClassConfig(max_ttl_s=30), denial=ClassConfig(max_ttl_s=30)
        ),
    ),
    Valid(
        body="cache 30 Example.ORG dns://10.0.0.0/24:53",
        want=CacheConfig(
            zones=("example.org.", "0.0.10.in-addr.arpa."),
            success=ClassConfig(max_ttl_s=30),
            denial=ClassConfig(max_ttl_s=30),
        ),
    ),
    Valid(body="cache example.org", want=CacheConfig(zones=("example.org.",))),
    Valid(
        keys="example.org cluster.local",
        body="cache",
        want=CacheConfig(zones=("example.org.", "cluster.local.")),
    ),
    Valid(
        body="cache +7",
        want=CacheConfig(
            zones=ROOT, success=ClassConfig(max_ttl_s=7), denial=ClassConfig(max_ttl_s=7)
        ),
    ),
    Valid(
        body="cache 30 {\n success 5000 60 10\n denial 100\n }",
        want=CacheConfig(
            zones=ROOT,
            success=ClassConfig(capacity=5000, max_ttl_s=60, min_ttl_s=10),
            denial=ClassConfig(capacity=100, max_ttl_s=30),
        ),
    ),
    Valid(
        body="cache {\n denial 20000 600 0\n }",
        want=CacheConfig(
            zones=ROOT, denial=ClassConfig(capacity=20000, max_ttl_s=600, min_ttl_s=0)
        ),
    ),
    Valid(
        body="cache {\n prefetch 10\n }", want=CacheConfig(zones=ROOT, prefetch=Prefetch(amount=10))
    ),
    Valid(
        body="cache {\n prefetch 2 10m 50%\n }",
        want=CacheConfig(zones=ROOT, prefetch=Prefetch(amount=2, window_s=600.0, percentage=50)),
    ),
    Valid(
        body="cache {\n prefetch 0 30s\n }",
        want=CacheConfig(zones=ROOT, prefetch=Prefetch(amount=0, window_s=30.0)),
    ),
    Valid(
        body="cache {\n serve_stale\n }",
        want=CacheConfig(zones=ROOT, stale=ServeStale(duration_s=3600.0)),
    ),
    Valid(
        body="cache {\n serve_stale 10m Immediate 30s 10s\n }",
        want=CacheConfig(
            zones=ROOT, stale=ServeStale(duration_s=600.0, response_ttl_s=30, recheck_s=10.0)
        ),
    ),
    Valid(
        body="cache {\n serve_stale 1h verify\n }",
        want=CacheConfig(zones=ROOT, stale=ServeStale(duration_s=3600.0, verify=True)),
    ),
    Valid(
        body="cache {\n serve_stale 1h VERIFY 100ms 30s 5m\n }",
        want=CacheConfig(
            zones=ROOT,
            stale=ServeStale(
                duration_s=3600.0,
                verify=True,
                verify_timeout_s=0.1,
                response_ttl_s=30,
                recheck_s=300.0,
            ),
        ),
    ),
    Valid(
        body="cache {\n serve_stale 1h verify 0 30s\n }",
        want=CacheConfig(
            zones=ROOT, stale=ServeStale(duration_s=3600.0, verify=True, response_ttl_s=30)
        ),
    ),
    Valid(
        body="cache {\n serve_stale 2h\n serve_stale_policy PREFER_POSITIVE\n }",
        want=CacheConfig(zones=ROOT, stale=ServeStale(duration_s=7200.0), prefer_positive=True),
    ),
    Valid(body="cache {\n servfail 0\n }", want=CacheConfig(zones=ROOT, servfail_s=0.0)),
    Valid(body="cache {\n servfail 5m\n }", want=CacheConfig(zones=ROOT, servfail_s=300.0)),
    Valid(
        body="cache 30 {\n disable success cluster.local\n disable denial cluster.local\n }",
        want=CacheConfig(
            zones=ROOT,
            success=ClassConfig(max_ttl_s=30),
            denial=ClassConfig(max_ttl_s=30),
            disable_success=("cluster.local.",),
            disable_denial=("cluster.local.",),
        ),
    ),
    Valid(
        body="cache {\n disable denial\n disable success A.example.org b.example.org\n }",
        want=CacheConfig(
            zones=ROOT,
            disable_success=("a.example.org.", "b.example.org."),
            disable_denial=(".",),
        ),
    ),
    Valid(body="cache {\n keepttl\n }", want=CacheConfig(zones=ROOT, keepttl=True)),
]


@pytest.mark.parametrize("case", VALID, ids=Valid.id)
def test_valid(case: Valid) -> None:
    block = build_config(corefile(case.body, case.keys)).blocks[0]
    assert block.plugins == ("cache", "whoami")
    assert isinstance(block.head, Cache)
    assert block.head.config == case.want


@pytest.mark.parametrize(
    ("capacity", "size"),
    [
        (10000, 9984),
        (9984, 9984),
        (5000, 4864),
        (1024, 1024),
        (1000, 1024),
        (0, 1024),
        (-300, 1024),
        (100_000, 99_840),
    ],
)
def test_capacity_is_rounded_like_256_shards(capacity: int, size: int) -> None:
    assert ClassConfig(capacity=capacity, max_ttl_s=1).size == size


@dataclass(frozen=True, kw_only=True)
class Invalid:
    body: str
    error: str

    def id(self) -> str:
        return self.body.replace("\n", ";")


INVALID = [
    Invalid(body="cache 0", error="Corefile:2: cache: cache TTL can not be zero or negative: 0"),
    Invalid(
        body="cache -10", error="Corefile:2: cache: cache TTL can not be zero or negative: -10"
    ),
    Invalid(
        body="cache 30 a..b",
        error="Corefile:2: cache: zone is not a valid domain name: a..b",
    ),
    Invalid(
        body="cache {\n success\n }",
        error="Corefile:3: cache: success: expected 1 to 3 arguments, got 0",
    ),
    Invalid(
        body="cache {\n denial 1 2 3 4\n }",
        error="Corefile:3: cache: denial: expected 1 to 3 arguments, got 4",
    ),
    Invalid(
        body="cache {\n success many\n }",
        error="Corefile:3: cache: success: CAPACITY must be an integer, got 'many'",
    ),
    Invalid(
        body="cache {\n success 100 1.5\n }",
        error="Corefile:3: cache: success: TTL must be an integer, got '1.5'",
    ),
    Invalid(
        body="cache {\n success 100 0\n }",
        error="Corefile:3: cache: cache TTL can not be zero or negative: 0",
    ),
    Invalid(
        body="cache {\n denial 100 10 -1\n }",
        error="Corefile:3: cache: cache min TTL can not be negative: -1",
    ),
    Invalid(
        body="cache {\n denial 100 10 x\n }",
        error="Corefile:3: cache: denial: MINTTL must be an integer, got 'x'",
    ),
    Invalid(
        body="cache {\n prefetch\n }",
        error="Corefile:3: cache: prefetch: expected 1 to 3 arguments, got 0",
    ),
    Invalid(
        body="cache {\n prefetch -1\n }",
        error="Corefile:3: cache: prefetch amount should be positive: -1",
    ),
    Invalid(
        body="cache {\n prefetch 1 soon\n }",
        error="Corefile:3: cache: prefetch: invalid duration: time: invalid duration 'soon'",
    ),
    Invalid(
        body="cache {\n prefetch 1 1m 50\n }",
        error="Corefile:3: cache: last character of percentage should be `%`, but is: '0'",
    ),
    Invalid(
        body="cache {\n prefetch 1 1m 5%\n }",
        error="Corefile:3: cache: percentage should fall in range [10, 90]: 5",
    ),
    Invalid(
        body="cache {\n prefetch 1 1m 95%\n }",
        error="Corefile:3: cache: percentage should fall in range [10, 90]: 95",
    ),
    Invalid(
        body="cache {\n prefetch 1 1m half%\n }",
        error="Corefile:3: cache: prefetch: PERCENTAGE must be an integer, got 'half%'",
    ),
    Invalid(
        body="cache {\n serve_stale 1h verify 1s 1s 1s 1s\n }",
        error="Corefile:3: cache: serve_stale: expected 0 to 5 arguments, got 6",
    ),
    Invalid(
        body="cache {\n serve_stale -1s\n }",
        error="Corefile:3: cache: invalid negative duration for serve_stale",
    ),
    Invalid(
        body="cache {\n serve_stale 1h sometimes\n }",
        error="Corefile:3: cache: invalid value for serve_stale refresh mode: sometimes",
    ),
    Invalid(
        body="cache {\n serve_stale 1h verify -1s\n }",
        error="Corefile:3: cache: invalid negative timeout for serve_stale verify",
    ),
    Invalid(
        body="cache {\n serve_stale 1h verify x\n }",
        error="Corefile:3: cache: serve_stale: invalid verify timeout: time: invalid duration 'x'",
    ),
    Invalid(
        body="cache {\n serve_stale 1h immediate 1500ms\n }",
        error="Corefile:3: cache: serve_stale response TTL must be a whole number of seconds",
    ),
    Invalid(
        body="cache {\n serve_stale 1h immediate -30s\n }",
        error="Corefile:3: cache: invalid negative response TTL for serve_stale",
    ),
    Invalid(
        body="cache {\n serve_stale 1h immediate 5000000000s\n }",
        error="Corefile:3: cache: serve_stale response TTL exceeds the DNS TTL range",
    ),
    Invalid(
        body="cache {\n serve_stale 1h immediate 30s 6m\n }",
        error="Corefile:3: cache: serve_stale failure recheck cannot exceed 5 minutes",
    ),
    Invalid(
        body="cache {\n serve_stale 1h verify 1s 30s -1s\n }",
        error="Corefile:3: cache: invalid negative failure recheck for serve_stale",
    ),
    Invalid(
        body="cache {\n serve_stale 1h immediate 30s 30s 1s\n }",
        error="Corefile:3: cache: serve_stale: immediate takes at most RESPONSE_TTL and "
        "FAILURE_RECHECK",
    ),
    Invalid(
        body="cache {\n serve_stale_policy prefer_positive\n }",
        error="Corefile:3: cache: serve_stale_policy requires serve_stale",
    ),
    Invalid(
        body="cache {\n serve_stale\n serve_stale_policy prefer_positive\n"
        " serve_stale_policy prefer_positive\n }",
        error="Corefile:5: cache: serve_stale_policy can only be specified once",
    ),
    Invalid(
        body="cache {\n serve_stale\n serve_stale_policy newest\n }",
        error="Corefile:4: cache: invalid serve_stale_policy: newest",
    ),
    Invalid(
        body="cache {\n serve_stale\n serve_stale_policy\n }",
        error="Corefile:4: cache: serve_stale_policy: expected exactly 1 argument, got 0",
    ),
    Invalid(
        body="cache {\n servfail\n }",
        error="Corefile:3: cache: servfail: expected exactly 1 argument, got 0",
    ),
    Invalid(
        body="cache {\n servfail 6m\n }",
        error="Corefile:3: cache: caching SERVFAIL responses over 5 minutes is not permitted",
    ),
    Invalid(
        body="cache {\n servfail -5s\n }",
        error="Corefile:3: cache: invalid negative ttl for servfail",
    ),
    Invalid(
        body="cache {\n servfail 5\n }",
        error="Corefile:3: cache: servfail: invalid duration: time: invalid duration '5'",
    ),
    Invalid(
        body="cache {\n disable\n }",
        error="Corefile:3: cache: disable: expected at least 1 argument, got 0",
    ),
    Invalid(
        body="cache {\n disable everything\n }",
        error='Corefile:3: cache: cache type for disable must be "success" or "denial"',
    ),
    Invalid(
        body="cache {\n disable denial a..b\n }",
        error="Corefile:3: cache: invalid disabled zone: a..b: "
        "zone is not a valid domain name: a..b",
    ),
    Invalid(
        body="cache {\n keepttl please\n }",
        error="Corefile:3: cache: keepttl: expected no arguments, got 1",
    ),
    Invalid(
        body="cache {\n success 100 {\n }\n }",
        error="Corefile:3: cache: success takes no block",
    ),
    Invalid(body="cache {\n shards 16\n }", error="Corefile:3: cache: unknown property 'shards'"),
    Invalid(
        body="cache 30\n    cache 60",
        error="Corefile:3: cache: this plugin can only be used once per Server Block",
    ),
]


@pytest.mark.parametrize("case", INVALID, ids=Invalid.id)
def test_invalid(case: Invalid) -> None:
    with pytest.raises(CorefileErrors) as info:
        build_config(corefile(case.body))
    assert [str(e) for e in info.value.errors] == [case.error]


def test_registered_once_per_block() -> None:
    assert SETUP["cache"] is SPEC
    assert SPEC.once


def test_blocks_share_the_metric_families() -> None:
    config = build_config(
        "example.org {\n    cache\n    whoami\n}\nexample.net {\n    cache 10\n    whoami\n}\n"
    )
    heads = [b.head for b in config.blocks]
    assert all(isinstance(h, Cache) for h in heads)
    caches = [h for h in heads if isinstance(h, Cache)]
    assert caches[0].metrics is caches[1].metrics is metrics_for(config.process.metrics)
    assert caches[0].zones_label == "example.org."
    assert caches[1].zones_label == "example.net."
    other = Metrics()
    assert metrics_for(other) is not caches[0].metrics
    text = config.process.metrics.exposition().decode()
    assert text.count("# TYPE coredns_cache_hits_total counter") == 1


async def test_shutdown_hooks_cancel_background_tasks() -> None:
    config = build_config(corefile("cache"))
    cache = config.blocks[0].head
    assert isinstance(cache, Cache)
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()

    task = cache.spawn(stuck())
    assert cache.tasks == {task}
    for hook in reversed(config.process.shutdown):
        await hook()
    assert task.cancelled()
    assert not cache.tasks
    assert cache.closed
