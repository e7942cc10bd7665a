"""`ProcessContext.reuse`: what a reloaded configuration takes over, and who stops it."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import pytest

from clusterdns.chain.build import Config
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.setup import Resources, SetupContext
from clusterdns.corefile import parse
from clusterdns.errors import ServerError
from clusterdns.server.lifecycle import Server
from tests.dnstest import build_config

COREFILE = ".:0 {\n    bind 127.0.0.1\n    whoami\n}\n"


@dataclass(eq=False)
class Thing:
    name: str
    starts: int = 0
    stops: int = 0

    async def start(self) -> None:
        self.starts += 1

    async def stop(self) -> None:
        self.stops += 1


def config(previous: Config | None = None) -> Config:
    made = build_config(COREFILE)
    if previous is not None:
        made.process.resources = Resources(previous.process.resources)
    return made


def hold(c: Config, key: Hashable) -> Thing:
    return c.process.reuse(key, lambda: Thing(str(key)), start=Thing.start, stop=Thing.stop)


async def test_taken_over_resources_survive_the_old_shutdown() -> None:
    first = config()
    watch = hold(first, "watch")
    server = Server(first, quiet=True)
    await server.start()
    try:
        assert (watch.starts, watch.stops) == (1, 0)

        second = config(first)
        assert hold(second, "watch") is watch  # taken over, not started again
        extra = hold(second, "extra")
        await server.swap(second)
        assert (watch.starts, watch.stops) == (1, 0)  # the old shutdown left it alone
        assert (extra.starts, extra.stops) == (1, 0)

        third = config(second)
        again = hold(third, "watch")
        twin = hold(third, "watch")  # a second claim of one key in one configuration: a new one
        assert again is watch and twin is not watch
        await server.swap(third)
        assert (extra.starts, extra.stops) == (1, 1)  # not taken over: stopped with `second`
        assert (watch.starts, watch.stops) == (1, 0) and twin.starts == 1
    finally:
        await server.stop(graceful=False)
    assert (watch.starts, watch.stops) == (1, 1)
    assert twin.stops == 1


async def test_a_failed_reload_leaves_resources_with_the_running_configuration() -> None:
    first = config()
    watch = hold(first, "watch")
    server = Server(first, quiet=True)
    await server.start()
    try:
        second = config(first)
        assert hold(second, "watch") is watch
        fresh = hold(second, "fresh")

        async def boom() -> None:
            raise ServerError("boom")

        second.process.startup.append(boom)
        with pytest.raises(ServerError, match="boom"):
            await server.swap(second)
        assert server.config is first
        assert (fresh.starts, fresh.stops) == (1, 1)  # started by the failed one, stopped again
        assert (watch.starts, watch.stops) == (1, 0)  # still the running configuration's

        third = config(first)
        assert hold(third, "watch") is watch  # still available to the next reload
        await server.swap(third)
        assert (watch.starts, watch.stops) == (1, 0)
    finally:
        await server.stop(graceful=False)
    assert watch.stops == 1


def test_fingerprint_ignores_lines_but_not_tokens_or_zones() -> None:
    def key(text: str) -> Hashable:
        c = build_config(text)
        (sb,) = parse(text, "Corefile", DIRECTIVES)
        return SetupContext(c.blocks[0].settings, c.process).fingerprint(sb.lines_of("hosts"))

    base = key("example.org {\n    hosts {\n        192.0.2.1 a.example.org\n    }\n}\n")
    moved = key("\n\nexample.org {\n\n    hosts {\n        192.0.2.1 a.example.org\n    }\n}\n")
    assert moved == base
    assert key("example.org {\n    hosts {\n        192.0.2.2 a.example.org\n    }\n}\n") != base
    assert key("example.net {\n    hosts {\n        192.0.2.1 a.example.net\n    }\n}\n") != base
    assert key("example.org {\n    hosts { 192.0.2.1 a.example.org }\n}\n") == base
    assert key("example.org {\n    hosts 192.0.2.1 a.example.org\n}\n") != base
