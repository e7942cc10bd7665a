"""`reload` setup, the digest, and the poller against a scripted process (no server)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.setup import Reloader
from clusterdns.cli import CorefileSource
from clusterdns.corefile import ServerBlock, parse
from clusterdns.errors import ClusterDNSError, CorefileError, CorefileErrors, ServerError
from clusterdns.metrics import Metrics
from clusterdns.plugins.reload import (
    Poller,
    ReloadConfig,
    ReloadMetrics,
    digest,
    poller_of,
    reload_metrics,
)
from clusterdns.plugins.reload import parse as parse_reload
from tests.dnstest import build_config, new_process
from tests.plugins.reload.harness import FORMAT

# -- setup ----------------------------------------------------------------------------------------


def reload_line(args: str) -> ReloadConfig:
    (block,) = parse(f". {{\n    reload {args}\n}}\n", "Corefile", DIRECTIVES)
    return parse_reload(block.directives[0])


@pytest.mark.parametrize(
    ("args", "interval_s", "jitter_s"),
    [
        ("", 30.0, 15.0),
        ("10s", 10.0, 5.0),  # jitter cut to INTERVAL/2
        ("2s", 2.0, 1.0),
        ("1m 20s", 60.0, 20.0),
        ("1m 0", 60.0, 0.0),
        ("90s 1s", 90.0, 1.0),
        ("1h 2h", 3600.0, 1800.0),
        ("2500ms 1s", 2.5, 1.0),
    ],
)
def test_valid(args: str, interval_s: float, jitter_s: float) -> None:
    assert reload_line(args) == ReloadConfig(interval_s, jitter_s)


TOO_SHORT = "interval value must be greater or equal to 2s"


@pytest.mark.parametrize(
    ("corefile", "error"),
    [
        (
            ". {\n    reload 1s\n}",
            "Corefile:2: reload: interval value must be greater or equal to 2s",
        ),
        (
            ". {\n    reload -5s\n}",
            "Corefile:2: reload: interval value must be greater or equal to 2s",
        ),
        (
            ". {\n    reload 0\n}",
            "Corefile:2: reload: interval value must be greater or equal to 2s",
        ),
        (
            ". {\n    reload 30s 500ms\n}",
            "Corefile:2: reload: jitter value must be 0 or greater or equal to 1s",
        ),
        (
            ". {\n    reload 30s -1s\n}",
            "Corefile:2: reload: jitter value must be 0 or greater or equal to 1s",
        ),
        (". {\n    reload 30\n}", "Corefile:2: reload: time: invalid duration '30'"),
        (". {\n    reload 30s abc\n}", "Corefile:2: reload: time: invalid duration 'abc'"),
        (". {\n    reload 30s 5s 1s\n}", "Corefile:2: reload: expected 0 to 2 arguments, got 3"),
        (". {\n    reload {\n        x\n    }\n}", "Corefile:2: reload: reload takes no block"),
        (
            ". {\n    reload\n    whoami\n    reload 5s\n}",
            "Corefile:4: reload: this plugin can only be used once per Server Block",
        ),
    ],
)
def test_invalid(corefile: str, error: str) -> None:
    with pytest.raises(CorefileErrors) as info:
        build_config(corefile)
    assert [str(e) for e in info.value.errors] == [error]


def test_setup_only_and_metrics_registered() -> None:
    config = build_config(". {\n    reload\n    whoami\n}\n")
    assert config.blocks[0].plugins == ("whoami",)  # no handler in the chain
    text = config.process.metrics.exposition().decode()
    assert "coredns_reload_failed_total 0.0" in text
    assert "coredns_reload_version_info" not in text  # Q29: absent, not even HELP/TYPE
    # Without a process to reload (tests, -validate) nothing is started.
    assert config.process.startup == [] and poller_of(config.process.reloader) is None


def test_period_is_drawn_once_within_the_jitter() -> None:
    config = ReloadConfig(30.0, 15.0)
    rng = random.Random(7)
    periods = [config.period(rng) for _ in range(2000)]
    assert all(22.5 <= p < 37.5 for p in periods)
    assert min(periods) < 23.0 and max(periods) > 37.0
    assert ReloadConfig(30.0, 0.0).period(rng) == 30.0


# -- digest ---------------------------------------------------------------------------------------

BASE = """\
.:53 {
    errors
    forward . 10.0.0.1 {
        max_concurrent 1000
    }
}
"""


def blocks_of(text: str, tmp_path: Path, name: str = "Corefile") -> list[ServerBlock]:
    path = tmp_path / name
    path.write_text(text)
    source = CorefileSource(str(path), 53)
    return source.read()


def test_digest_ignores_what_does_not_move_tokens(tmp_path: Path) -> None:
    base = digest(blocks_of(BASE, tmp_path))
    assert len(base) == 128 and int(base, 16) >= 0
    commented = BASE.replace("errors", "errors   # log them").replace("{\n", "{  # open\n", 1)
    assert digest(blocks_of(commented, tmp_path)) == base
    reindented = BASE.replace("    ", "\t")
    assert digest(blocks_of(reindented, tmp_path)) == base
    assert digest(blocks_of(BASE + "# trailing comment\n\n", tmp_path)) == base


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: "# a comment line above\n" + t,
        lambda t: t.replace("    errors\n", "\n    errors\n"),
        lambda t: t.replace("10.0.0.1", "10.0.0.2"),
        lambda t: t.replace("{\n        max_concurrent 1000\n    }", "{ max_concurrent 1000 }"),
        lambda t: t.replace("forward . 10.0.0.1 {", "forward . 10.0.0.1 max_concurrent {"),
        lambda t: t.replace(".:53", ".:54"),
    ],
    ids=["line-above", "blank-line", "argument", "same-tokens-other-lines", "nesting", "key"],
)
def test_digest_changes(edit: object, tmp_path: Path) -> None:
    assert callable(edit)
    assert digest(blocks_of(edit(BASE), tmp_path)) != digest(blocks_of(BASE, tmp_path))


def test_digest_sees_nesting_on_one_line(tmp_path: Path) -> None:
    flat = digest(blocks_of(".:53 {\n    hosts a b\n}\n", tmp_path))
    nested = digest(blocks_of(".:53 {\n    hosts a { b }\n}\n", tmp_path))
    assert flat != nested


def test_digest_covers_imported_files(tmp_path: Path) -> None:
    (tmp_path / "extra").write_text("whoami\nlog\n")
    text = ".:53 {\n    import extra\n}\n"
    before = digest(blocks_of(text, tmp_path))
    assert digest(blocks_of(text, tmp_path)) == before
    (tmp_path / "extra").write_text("whoami\nlog # a comment\n")
    assert digest(blocks_of(text, tmp_path)) == before
    (tmp_path / "extra").write_text("whoami\n\nlog\n")
    assert digest(blocks_of(text, tmp_path)) != before
    # The same tokens on the same lines from a file with another name: another digest.
    (tmp_path / "other").write_text("whoami\nlog\n")
    assert digest(blocks_of(".:53 {\n    import other\n}\n", tmp_path)) != before


def test_read_accepts_unknown_directives_for_the_restart_to_reject(tmp_path: Path) -> None:
    (block,) = blocks_of(".:53 {\n    nosuch 1\n}\n", tmp_path)
    assert block.directives[0].name == "nosuch"
    with pytest.raises(CorefileError, match=r"Corefile:3: Unexpected EOF"):
        blocks_of(".:53 {\n    whoami {\n}\n", tmp_path)


# -- the poller, with a scripted process ----------------------------------------------------------


class Script(Reloader):
    """A process whose Corefile reads and restarts the test scripts."""

    def __init__(self, tmp_path: Path, text: str) -> None:
        self.path = tmp_path / "Corefile"
        self.path.write_text(text)
        self.source = CorefileSource(str(self.path), 53)
        self._blocks = self.source.read()
        self.restarts: list[list[ServerBlock]] = []
        self.fail_with: ClusterDNSError | None = None
        self.on_restart: asyncio.Event = asyncio.Event()

    @property
    def blocks(self) -> Sequence[ServerBlock]:
        return self._blocks

    def read(self) -> list[ServerBlock]:
        return self.source.read()

    async def restart(self, blocks: list[ServerBlock]) -> None:
        self.restarts.append(blocks)
        self.on_restart.set()
        if self.fail_with is not None:
            raise self.fail_with


def metrics() -> ReloadMetrics:
    return reload_metrics(Metrics())


def series(m: ReloadMetrics) -> list[tuple[str, ...]]:
    return list(m.version_info.values)


async def test_check_restarts_only_on_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(tmp_path, ".:53 {\n    whoami\n}\n")
    m = metrics()
    poller = Poller(script, m, 30.0)
    assert await poller.check() is False
    script.path.write_text(".:53 {\n    whoami # same tokens, same lines\n}\n")
    assert await poller.check() is False
    assert script.restarts == [] and series(m) == []  # Q29: absent until a change is seen
    script.path.write_text(".:53 {\n    whoami\n    log\n}\n")
    assert await poller.check() is True
    (blocks,) = script.restarts
    assert [d.name for d in blocks[0].directives] == ["whoami", "log"]
    assert series(m) == [("sha512", digest(blocks))]
    assert m.failed.get() == 0
    assert await poller.check() is False  # now the running digest


async def test_failed_restart_is_counted_and_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clusterdns")
    script = Script(tmp_path, ".:53 {\n    whoami\n}\n")
    m = metrics()
    poller = Poller(script, m, 30.0)
    script.fail_with = ServerError("starting with listener file descriptors: Corefile:2: boom")
    script.path.write_text(".:53 {\n    bad\n}\n")
    assert await poller.check() is True
    broken = digest(script.restarts[0])
    assert m.failed.get() == 1
    assert series(m) == [("sha512", broken)]  # Q29: the failed digest is shown
    assert [FORMAT.format(r) for r in caplog.records] == [
        "[ERROR] plugin/reload: Corefile changed but reload failed: "
        "starting with listener file descriptors: Corefile:2: boom"
    ]
    assert await poller.check() is False  # the same broken file is not tried again
    assert len(script.restarts) == 1 and m.failed.get() == 1
    script.fail_with = None
    script.path.write_text(".:53 {\n    whoami\n}\n")  # back to the running text: a change again
    assert await poller.check() is True
    assert m.failed.get() == 1
    assert series(m) == [("sha512", digest(script.restarts[1]))]


async def test_parse_and_load_failures_only_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clusterdns")
    script = Script(tmp_path, ".:53 {\n    whoami\n}\n")
    m = metrics()
    poller = Poller(script, m, 30.0)
    script.path.write_text(".:53 {\n    whoami {\n}\n")
    assert await poller.check() is False
    script.path.unlink()
    assert await poller.check() is False
    assert script.restarts == [] and m.failed.get() == 0 and series(m) == []
    path = script.path
    assert [FORMAT.format(r) for r in caplog.records] == [
        f"[WARNING] plugin/reload: Corefile parse failed: {path}:3: Unexpected EOF",
        f"[WARNING] plugin/reload: Corefile load failed: {path}: No such file or directory",
    ]


async def test_loop_checks_every_period_and_stops(tmp_path: Path) -> None:
    script = Script(tmp_path, ".:53 {\n    whoami\n}\n")
    asked: list[float] = []
    tick: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        await tick.get()

    poller = Poller(script, metrics(), 31.25, sleep=sleep)
    await poller.start()
    script.path.write_text(".:53 {\n    log\n}\n")
    tick.put_nowait(None)
    async with asyncio.timeout(10):
        await script.on_restart.wait()
    assert asked[0] == 31.25
    await poller.stop()
    assert poller.task is None
    assert len(script.restarts) == 1


async def test_stop_from_inside_its_own_check_ends_the_loop(tmp_path: Path) -> None:
    """The swap a check started stops the old configuration's poller from inside that check."""
    script = Script(tmp_path, ".:53 {\n    whoami\n}\n")
    tick: asyncio.Queue[None] = asyncio.Queue()
    sleeps = 0

    async def sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await tick.get()

    poller = Poller(script, metrics(), 30.0, sleep=sleep)

    async def restart(blocks: list[ServerBlock]) -> None:
        script.restarts.append(blocks)
        await poller.stop()  # what the old configuration's shutdown hook does

    script.restart = restart  # type: ignore[method-assign]
    await poller.start()
    task = poller.task
    assert task is not None
    script.path.write_text(".:53 {\n    log\n}\n")
    tick.put_nowait(None)
    async with asyncio.timeout(10):
        await task  # ends by itself: no further sleep
    assert sleeps == 1 and len(script.restarts) == 1


def test_one_poller_per_configuration_the_last_block_sets_the_period(tmp_path: Path) -> None:
    script = Script(tmp_path, ".:53 {\n    whoami\n}\n")
    process = new_process()
    process.reloader = script
    blocks = parse(
        "a.:53 {\n    reload 1h 0\n}\nb.:53 {\n    reload 2h 0\n}\n", "Corefile", DIRECTIVES
    )
    from clusterdns.chain.build import build
    from clusterdns.plugins import SETUP

    build(blocks, specs=SETUP, dns_port=53, process=process)
    poller = poller_of(script)
    assert poller is not None and poller.period_s == 7200.0
    assert len(process.startup) == 1 and len(process.shutdown) == 1
