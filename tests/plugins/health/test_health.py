from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from clusterdns.chain.build import Config, build
from clusterdns.chain.order import DIRECTIVES
from clusterdns.corefile import parse as parse_corefile
from clusterdns.errors import CorefileErrors
from clusterdns.plugins import SETUP
from clusterdns.plugins import health as health_mod
from clusterdns.plugins.health import Health, HealthConfig, health_metrics, parse
from tests import dnstest
from tests.dnstest import HttpReply, build_config, new_process


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[None]:
    await config.process.http.start()
    try:
        yield
    finally:
        await config.process.http.stop()


def the_health(config: Config) -> Health:
    """The Health instance whose start() setup registered as a startup hook."""
    hook = config.process.startup[0]
    assert inspect.ismethod(hook)
    health = hook.__self__
    assert isinstance(health, Health)
    return health


def port_of(config: Config, address: str) -> int:
    port = config.process.http.listeners[address].port
    assert port > 0
    return port


# --- setup -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    want: HealthConfig | None = None
    error: str = ""


SETUP_CASES = [
    SetupCase(corefile=".:53 {\n    health\n}", want=HealthConfig()),
    SetupCase(corefile=".:53 {\n    health :8080\n}", want=HealthConfig(address=":8080")),
    SetupCase(
        corefile=".:53 {\n    health 127.0.0.1:0\n}", want=HealthConfig(address="127.0.0.1:0")
    ),
    SetupCase(corefile=".:53 {\n    health [::1]:8080\n}", want=HealthConfig(address="[::1]:8080")),
    SetupCase(
        corefile=".:53 {\n    health {\n        lameduck 5s\n    }\n}",
        want=HealthConfig(lameduck_s=5.0),
    ),
    SetupCase(
        corefile=".:53 {\n    health localhost:8091 {\n        lameduck 1m30s\n    }\n}",
        want=HealthConfig(address="localhost:8091", lameduck_s=90.0),
    ),
    SetupCase(
        corefile=".:53 {\n    health localhost\n}",
        error="Corefile:2: health: address 'localhost' is not host:port",
    ),
    SetupCase(
        corefile=".:53 {\n    health :http\n}",
        error="Corefile:2: health: address ':http' is not host:port",
    ),
    SetupCase(
        corefile=".:53 {\n    health :8080 :8081\n}",
        error="Corefile:2: health: expected 0 to 1 arguments, got 2",
    ),
    SetupCase(
        corefile=".:53 {\n    health {\n        lameduck\n    }\n}",
        error="Corefile:3: health: lameduck: expected exactly 1 argument, got 0",
    ),
    SetupCase(
        corefile=".:53 {\n    health {\n        lameduck 5s 6s\n    }\n}",
        error="Corefile:3: health: lameduck: expected exactly 1 argument, got 2",
    ),
    SetupCase(
        corefile=".:53 {\n    health {\n        lameduck 5\n    }\n}",
        error="Corefile:3: health: unable to parse lameduck duration value '5': "
        "time: invalid duration '5'",
    ),
    SetupCase(
        corefile=".:53 {\n    health {\n        lameduck -5s\n    }\n}",
        error="Corefile:3: health: lameduck duration must not be negative, got '-5s'",
    ),
    SetupCase(
        corefile=".:53 {\n    health {\n        lameduck 5s\n        verbose\n    }\n}",
        error="Corefile:4: health: unknown option 'verbose'",
    ),
    # As in CoreDNS, the last of several lines takes effect.
    SetupCase(
        corefile=".:53 {\n    health :8080\n    health :8081\n}",
        want=HealthConfig(address=":8081"),
    ),
    SetupCase(
        corefile="example.org:53 {\n    health :8080\n}\ncluster.local:53 {\n    health :8080\n}",
        error="Corefile:5: health: address :8080 already has a health endpoint in another block",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.corefile.replace("\n", " "))
def test_setup(case: SetupCase) -> None:
    if case.error:
        with pytest.raises(CorefileErrors) as info:
            build_config(case.corefile)
        assert str(info.value) == case.error
        return
    (block,) = parse_corefile(case.corefile, "Corefile", DIRECTIVES)
    assert parse(block.lines_of("health")[-1]) == case.want
    config = build_config(case.corefile)
    assert case.want is not None
    assert list(config.process.http.listeners) == [case.want.address]
    assert config.process.lameduck_s == case.want.lameduck_s
    listener = config.process.http.listeners[case.want.address]
    assert set(listener.routes) == {"/health"}
    assert config.blocks[0].plugins == ()  # setup-only: not in the chain
    assert len(config.process.startup) == len(config.process.shutdown) == 1


def test_lameduck_longest_wins() -> None:
    config = build_config(
        "example.org:53 {\n    health :8080 {\n        lameduck 2s\n    }\n}\n"
        "cluster.local:53 {\n    health :8081 {\n        lameduck 5s\n    }\n}\n"
        "example.net:53 {\n    health :8082\n}\n"
    )
    assert config.process.lameduck_s == 5.0
    assert set(config.process.http.listeners) == {":8080", ":8081", ":8082"}


def test_lameduck_keeps_a_longer_value_already_set() -> None:
    process = new_process()
    process.lameduck_s = 10.0
    blocks = parse_corefile(
        ".:53 {\n    health {\n        lameduck 5s\n    }\n}", "Corefile", DIRECTIVES
    )
    build(blocks, specs=SETUP, dns_port=53, process=process)
    assert process.lameduck_s == 10.0


def test_target_defaults_to_localhost() -> None:
    config = build_config(".:53 {\n    health\n}")
    assert the_health(config).target() == ("localhost", 8080)
    assert the_health(config).url() == "http://localhost:8080/health"
    config = build_config(".:53 {\n    health [::1]:8099\n}")
    assert the_health(config).target() == ("::1", 8099)
    assert the_health(config).url() == "http://[::1]:8099/health"


def test_metrics_registered_once_per_process() -> None:
    process = new_process()
    corefile = "a.example.org:53 {\n    health :8080\n}\nb.example.org:53 {\n    health :8081\n}"
    build(
        parse_corefile(corefile, "Corefile", DIRECTIVES), specs=SETUP, dns_port=53, process=process
    )
    # A reload sets up again against the same process-wide Metrics.
    again = new_process()
    again.metrics = process.metrics
    build(parse_corefile(corefile, "Corefile", DIRECTIVES), specs=SETUP, dns_port=53, process=again)
    text = process.metrics.exposition().decode()
    assert text.count("# TYPE coredns_health_request_duration_seconds histogram") == 1
    assert text.count("# TYPE coredns_health_request_failures_total counter") == 1
    assert "\ncoredns_health_request_failures_total 0.0\n" in text
    assert health_metrics(process.metrics) is health_metrics(again.metrics)


# --- the endpoint ------------------------------------------------------------------------------


async def test_health_endpoint() -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:0\n    whoami\n}")
    async with serving(config):
        port = port_of(config, "127.0.0.1:0")
        assert await dnstest.http_get(port, "/health") == HttpReply(
            200,
            {
                "content-type": "text/plain; charset=utf-8",
                "content-length": "2",
                "connection": "close",
            },
            b"OK",
        )
        reply = await dnstest.http_get(port, "/health", method="POST")
        assert (reply.status, reply.body) == (200, b"OK")
        reply = await dnstest.http_get(port, "/health?verbose=1")
        assert (reply.status, reply.body) == (200, b"OK")
        reply = await dnstest.http_get(port, "/healthz")
        assert (reply.status, reply.body) == (404, b"404 page not found\n")


# --- the self-check ----------------------------------------------------------------------------


async def test_check_success_records_duration() -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    health = the_health(config)
    async with serving(config):
        assert health.target() == ("127.0.0.1", port_of(config, "127.0.0.1:0"))
        assert await health.check() is True
        assert await health.check() is True
    assert health.metrics.duration.count(()) == 2
    assert health.metrics.failures.get(()) == 0
    text = config.process.metrics.exposition().decode()
    assert re.search(
        r'^coredns_health_request_duration_seconds_bucket\{le="2.5"\} 2.0$', text, re.M
    )
    for le in ("0.00025", "0.0025", "0.025", "0.25", "2.5", "+Inf"):
        assert f'coredns_health_request_duration_seconds_bucket{{le="{le}"}}' in text
    assert "\ncoredns_health_request_duration_seconds_count 2.0\n" in text


async def test_check_failure_counts_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    health = the_health(config)
    async with serving(config):
        port = port_of(config, "127.0.0.1:0")
    # The listener is closed now: the fetch to its old port is refused.
    health.config = HealthConfig(address=f"127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="clusterdns.plugins.health"):
        assert await health.check() is False
    assert health.metrics.failures.get(()) == 1
    assert health.metrics.duration.count(()) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert (
        caplog.records[0]
        .getMessage()
        .startswith(f"Local health request to http://127.0.0.1:{port}/health failed: ")
    )
    text = config.process.metrics.exposition().decode()
    assert "\ncoredns_health_request_failures_total 1.0\n" in text


async def test_check_non_200_is_a_failure() -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    health = the_health(config)
    listener = config.process.http.listeners["127.0.0.1:0"]
    del listener.routes["/health"]  # now the listener answers 404
    async with serving(config):
        assert await health.check() is False
    assert health.metrics.failures.get(()) == 1


async def test_check_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    config = build_config(f".:53 {{\n    health 127.0.0.1:{port}\n}}")
    health = the_health(config)
    monkeypatch.setattr(health_mod, "CHECK_TIMEOUT_S", 0.05)
    try:
        assert await health.check() is False
        assert accepted.is_set()
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()
    assert health.metrics.failures.get(()) == 1


async def test_serving_follows_the_listener() -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    health = the_health(config)
    assert not health.serving  # before start-up: the loop skips its checks
    async with serving(config):
        assert health.serving
    assert not health.serving  # side listeners already closed during shutdown


async def test_check_uses_the_listener_a_reload_kept() -> None:
    old = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    new = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    health = the_health(new)
    async with serving(old):
        # What the lifecycle's swap() does: keep the bound listener, give it the new routes.
        kept = old.process.http.listeners["127.0.0.1:0"]
        kept.routes = new.process.http.listeners["127.0.0.1:0"].routes
        new.process.http.listeners["127.0.0.1:0"] = kept
        assert health.target() == ("127.0.0.1", kept.port)
        assert await health.check() is True
    assert health.metrics.failures.get(()) == 0


def test_slow_check_warns(caplog: pytest.LogCaptureFixture) -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:8080\n}")
    health = the_health(config)
    with caplog.at_level(logging.WARNING, logger="clusterdns.plugins.health"):
        health.record(0.5, "")
        assert caplog.records == []
        health.record(1.5, "")
    assert [r.getMessage() for r in caplog.records] == [
        "Local health request to http://127.0.0.1:8080/health took more than 1s: 1.500s"
    ]
    assert health.metrics.failures.get(()) == 0
    assert health.metrics.duration.count(()) == 2


async def test_hooks_start_and_stop_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(".:53 {\n    health 127.0.0.1:0\n}")
    health = the_health(config)
    checked = asyncio.Event()
    errors: list[str] = []
    original = health.record

    def record(duration_s: float, error: str) -> None:
        original(duration_s, error)
        errors.append(error)
        checked.set()

    monkeypatch.setattr(health, "record", record)
    async with serving(config):
        for hook in config.process.startup:
            await hook()
        task = health.task
        assert task is not None and not task.done()
        async with asyncio.timeout(5):
            await checked.wait()
        for hook in reversed(config.process.shutdown):
            await hook()
    assert errors[0] == ""
    assert health.task is None
    assert task.cancelled()
    await health.stop()  # idempotent


# --- README ------------------------------------------------------------------------------------


def example_corefiles(doc: str) -> list[str]:
    return re.findall(r"^~~~ corefile\n(.*?)^~~~$", doc, re.M | re.S)


def test_readme_examples() -> None:
    doc = health_mod.__doc__
    assert doc is not None
    for section in ("# health", "## Name", "## Description", "## Syntax", "## Examples"):
        assert f"\n{section}\n" in f"\n{doc}"
    corefiles = example_corefiles(doc)
    assert len(corefiles) == 2
    for text in corefiles:
        config = build_config(text)
        assert any(lst.routes.get("/health") for lst in config.process.http.listeners.values())
