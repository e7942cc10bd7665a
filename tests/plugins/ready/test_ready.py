from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from clusterdns.chain.build import Config
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.setup import SetupContext
from clusterdns.corefile import parse as parse_corefile
from clusterdns.errors import CorefileErrors
from clusterdns.plugins import ready as ready_mod
from clusterdns.plugins.ready import Monitor, Ready, ReadyConfig, parse
from tests.dnstest import build_config, http_get

ADDR = "127.0.0.1:0"


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[None]:
    await config.process.http.start()
    try:
        yield
    finally:
        await config.process.http.stop()


class FakeCheck:
    """A readiness check that returns `ready` and counts how often it was asked."""

    def __init__(self, ready: bool = False) -> None:
        self.ready = ready
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.ready


def ctx_of(config: Config, block: int = 0) -> SetupContext:
    """A setup context for a block, as later plugins (kubernetes, loop) would see it."""
    return SetupContext(config.blocks[block].settings, config.process)


async def get_ready(config: Config, address: str = ADDR) -> tuple[int, bytes]:
    port = config.process.http.listeners[address].port
    assert port > 0
    reply = await http_get(port, "/ready")
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    return reply.status, reply.body


# --- setup -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    want: ReadyConfig | None = None
    error: str = ""


SETUP_CASES = [
    SetupCase(corefile=".:53 {\n    ready\n}", want=ReadyConfig()),
    SetupCase(corefile=".:53 {\n    ready :8181\n}", want=ReadyConfig(address=":8181")),
    SetupCase(corefile=".:53 {\n    ready 127.0.0.1:0\n}", want=ReadyConfig(address=ADDR)),
    SetupCase(
        corefile=".:53 {\n    ready {\n        monitor until-ready\n    }\n}",
        want=ReadyConfig(monitor=Monitor.UNTIL_READY),
    ),
    SetupCase(
        corefile=".:53 {\n    ready localhost:8182 {\n        monitor continuously\n    }\n}",
        want=ReadyConfig(address="localhost:8182", monitor=Monitor.CONTINUOUSLY),
    ),
    SetupCase(
        corefile=".:53 {\n    ready 8181\n}",
        error="Corefile:2: ready: address '8181' is not host:port",
    ),
    SetupCase(
        corefile=".:53 {\n    ready :8181 :8182\n}",
        error="Corefile:2: ready: expected 0 to 1 arguments, got 2",
    ),
    SetupCase(
        corefile=".:53 {\n    ready {\n        monitor\n    }\n}",
        error="Corefile:3: ready: monitor: expected exactly 1 argument, got 0",
    ),
    SetupCase(
        corefile=".:53 {\n    ready {\n        monitor sometimes\n    }\n}",
        error="Corefile:3: ready: monitor must be one of until-ready, continuously, "
        "got 'sometimes'",
    ),
    SetupCase(
        corefile=".:53 {\n    ready {\n        monitor continuously\n        every 5s\n    }\n}",
        error="Corefile:4: ready: unknown option 'every'",
    ),
    SetupCase(
        corefile=".:53 {\n    ready\n    ready :8182\n}",
        error="Corefile:3: ready: this plugin can only be used once per Server Block",
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
    assert parse(block.lines_of("ready")[0]) == case.want
    config = build_config(case.corefile)
    assert case.want is not None
    endpoint = config.process.http.listeners[case.want.address].routes["/ready"]
    assert isinstance(endpoint, Ready)
    assert [(w.block.index, w.monitor) for w in endpoint.watched] == [(0, case.want.monitor)]
    assert config.blocks[0].plugins == ()  # setup-only: not in the chain


def test_blocks_share_one_endpoint_per_address() -> None:
    config = build_config(
        "a.example.org:53 {\n    ready :8181\n}\n"
        "b.example.org:53 {\n    ready :8181 {\n        monitor continuously\n    }\n}\n"
        "c.example.org:53 {\n    ready :8182\n}\n"
    )
    shared = config.process.http.listeners[":8181"].routes["/ready"]
    other = config.process.http.listeners[":8182"].routes["/ready"]
    assert isinstance(shared, Ready) and isinstance(other, Ready)
    assert [(w.block.index, w.monitor) for w in shared.watched] == [
        (0, Monitor.UNTIL_READY),
        (1, Monitor.CONTINUOUSLY),
    ]
    assert [w.block.index for w in other.watched] == [2]


# --- the endpoint ------------------------------------------------------------------------------


async def test_ready_without_checks() -> None:
    config = build_config(".:53 {\n    ready 127.0.0.1:0\n    whoami\n}")
    async with serving(config):
        assert await get_ready(config) == (200, b"OK")
        port = config.process.http.listeners[ADDR].port
        assert (await http_get(port, "/health")).status == 404


async def test_until_ready(caplog: pytest.LogCaptureFixture) -> None:
    config = build_config(".:53 {\n    ready 127.0.0.1:0\n}")
    check = FakeCheck()
    ctx_of(config).add_ready_check("kubernetes", check)  # registered after ready's setup
    async with serving(config):
        with caplog.at_level(logging.INFO, logger="clusterdns.plugins.ready"):
            assert await get_ready(config) == (503, b"kubernetes")
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("INFO", 'Plugins not ready: "kubernetes"')
        ]
        check.ready = True
        assert await get_ready(config) == (200, b"OK")
        assert check.calls == 2
        check.ready = False  # e.g. the API connection is lost later
        assert await get_ready(config) == (200, b"OK")
        assert await get_ready(config) == (200, b"OK")
        assert check.calls == 2  # never asked again


async def test_continuously() -> None:
    config = build_config(".:53 {\n    ready 127.0.0.1:0 {\n        monitor continuously\n    }\n}")
    check = FakeCheck()
    ctx_of(config).add_ready_check("kubernetes", check)
    async with serving(config):
        assert await get_ready(config) == (503, b"kubernetes")
        check.ready = True
        assert await get_ready(config) == (200, b"OK")
        check.ready = False
        assert await get_ready(config) == (503, b"kubernetes")
        assert check.calls == 3


async def test_not_ready_names_sorted_and_unique(caplog: pytest.LogCaptureFixture) -> None:
    config = build_config(
        "a.example.org:53 {\n    ready 127.0.0.1:0\n}\nb.example.org:53 {\n    ready 127.0.0.1:0\n}"
    )
    kubernetes_a, kubernetes_b, forward, loop = FakeCheck(), FakeCheck(), FakeCheck(), FakeCheck()
    ctx_of(config, 0).add_ready_check("kubernetes", kubernetes_a)
    ctx_of(config, 0).add_ready_check("loop", loop)
    ctx_of(config, 1).add_ready_check("kubernetes", kubernetes_b)
    ctx_of(config, 1).add_ready_check("forward", forward)
    async with serving(config):
        with caplog.at_level(logging.INFO, logger="clusterdns.plugins.ready"):
            assert await get_ready(config) == (503, b"forward,kubernetes,loop")
        assert caplog.records[0].getMessage() == 'Plugins not ready: "forward,kubernetes,loop"'
        loop.ready = forward.ready = kubernetes_a.ready = True
        assert await get_ready(config) == (503, b"kubernetes")  # block b's kubernetes
        kubernetes_b.ready = True
        assert await get_ready(config) == (200, b"OK")


async def test_two_blocks_sharing_an_address_with_different_monitors() -> None:
    config = build_config(
        "a.example.org:53 {\n    ready 127.0.0.1:0\n}\n"
        "b.example.org:53 {\n    ready 127.0.0.1:0 {\n        monitor continuously\n    }\n}"
    )
    a, b = FakeCheck(ready=True), FakeCheck(ready=True)
    ctx_of(config, 0).add_ready_check("kubernetes", a)
    ctx_of(config, 1).add_ready_check("hosts", b)
    async with serving(config):
        assert await get_ready(config) == (200, b"OK")
        a.ready = b.ready = False
        assert await get_ready(config) == (503, b"hosts")  # only b is asked again
        assert (a.calls, b.calls) == (1, 2)


async def test_separate_addresses_ask_only_their_blocks() -> None:
    config = build_config(
        "a.example.org:53 {\n    ready 127.0.0.1:0\n}\nb.example.org:53 {\n    ready localhost:0\n}"
    )
    ctx_of(config, 1).add_ready_check("kubernetes", FakeCheck())
    async with serving(config):
        assert await get_ready(config, ADDR) == (200, b"OK")
    endpoint = config.process.http.listeners["localhost:0"].routes["/ready"]
    assert isinstance(endpoint, Ready)
    assert endpoint.status() == (503, "kubernetes")


async def test_shutting_down() -> None:
    config = build_config(".:53 {\n    ready 127.0.0.1:0\n}")
    check = FakeCheck(ready=True)
    ctx_of(config).add_ready_check("kubernetes", check)
    async with serving(config):
        assert await get_ready(config) == (200, b"OK")
        config.process.shutting_down = True
        assert await get_ready(config) == (503, b"Shutting down")
        port = config.process.http.listeners[ADDR].port
        reply = await http_get(port, "/ready", method="HEAD")
        assert (reply.status, reply.body) == (503, b"")


async def test_notes_follow_the_status_line() -> None:
    config = build_config(
        "a.example.org:53 {\n    ready 127.0.0.1:0\n}\nb.example.org:53 {\n    ready 127.0.0.1:0\n}"
    )
    check = FakeCheck(ready=True)
    ctx_of(config, 0).add_ready_check("kubernetes", check)
    detected: list[str] = []
    loop_note = "loop: forwarding loop detected via 10.0.0.10:53; not forwarding there"
    config.blocks[0].settings.ready_notes.append(lambda: "\n".join(detected))
    config.blocks[1].settings.ready_notes.append(lambda: "\n".join(detected))
    async with serving(config):
        assert await get_ready(config) == (200, b"OK")
        detected.append(loop_note)
        assert await get_ready(config) == (200, f"OK\n{loop_note}".encode())
        config.process.shutting_down = True
        assert await get_ready(config) == (503, f"Shutting down\n{loop_note}".encode())


async def test_notes_never_fail_and_follow_not_ready() -> None:
    config = build_config(".:53 {\n    ready 127.0.0.1:0 {\n        monitor continuously\n    }\n}")
    ctx_of(config).add_ready_check("kubernetes", FakeCheck())
    config.blocks[0].settings.ready_notes.append(lambda: "first note")
    config.blocks[0].settings.ready_notes.append(lambda: "")
    config.blocks[0].settings.ready_notes.append(lambda: "second note")
    async with serving(config):
        assert await get_ready(config) == (503, b"kubernetes\nfirst note\nsecond note")


# --- README ------------------------------------------------------------------------------------


def test_readme_examples() -> None:
    doc = ready_mod.__doc__
    assert doc is not None
    for section in ("# ready", "## Name", "## Description", "## Syntax", "## Examples"):
        assert f"\n{section}\n" in f"\n{doc}"
    corefiles = re.findall(r"^~~~ corefile\n(.*?)^~~~$", doc, re.M | re.S)
    assert len(corefiles) == 2
    for text in corefiles:
        config = build_config(text)
        endpoints = [lst.routes["/ready"] for lst in config.process.http.listeners.values()]
        assert endpoints and all(isinstance(e, Ready) for e in endpoints)
        watched = sum(len(e.watched) for e in endpoints if isinstance(e, Ready))
        assert watched == len(config.blocks)
