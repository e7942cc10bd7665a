from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

import clusterdns.plugins.errors as errors_plugin
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.plugins.errors import Consolidate, Consolidator, Errors, ErrorsConfig
from clusterdns.plugins.errors.config import MAX_REGEXP_CHARS
from tests.dnstest import RecordingWriter, build_config, make_request, serve

LOGGER = "clusterdns.plugins.errors"
TIMEOUT = "read udp 10.244.0.2:51234->10.0.0.2:53: i/o timeout"


# --- helpers -------------------------------------------------------------------------------------


class Failing:
    """The next plugin: raises the error it is given (or returns `code` when there is none)."""

    name: ClassVar[str] = "forward"

    def __init__(self, exc: BaseException | None = None, *, code: int = rc.NOERROR) -> None:
        self.exc = exc
        self.code = code
        self.calls = 0

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return self.code


@dataclass
class FakeTimer:
    delay_s: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeTimers:
    """Stands in for `loop.call_later`; the test decides when windows end."""

    timers: list[FakeTimer] = field(default_factory=list)

    def __call__(self, delay_s: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(delay_s, callback)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def fire(self) -> None:
        """Run every pending callback, as the loop would when its delay has passed."""
        for timer in self.pending:
            timer.cancelled = True
            timer.callback()


def rule(
    pattern: str, period_s: float = 300.0, level: int = logging.ERROR, show_first: bool = False
) -> Consolidate:
    return Consolidate(
        period_s=period_s, pattern=re.compile(pattern), level=level, show_first=show_first
    )


def timeout_error(text: str = TIMEOUT, code: int = rc.SERVFAIL) -> PluginError:
    return PluginError("forward", text, rcode=code)


async def serve_errors(handler: Errors, qname: str = "example.com.", qtype: str = "A") -> int:
    req = make_request(qname, qtype)
    return await handler.serve(req, RecordingWriter(req))


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith(LOGGER)]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


# --- setup ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    body: str
    want: ErrorsConfig | str

    def id(self) -> str:
        return self.body.replace("\n", "⏎")[:60]


def block(*options: str) -> str:
    return "errors {\n" + "".join(f"    {o}\n" for o in options) + "}"


SETUP_CASES = [
    SetupCase(body="errors", want=ErrorsConfig()),
    SetupCase(body="errors stdout", want=ErrorsConfig()),
    SetupCase(body="errors stdout {\n}", want=ErrorsConfig()),
    SetupCase(body=block("stacktrace"), want=ErrorsConfig(stacktrace=True)),
    SetupCase(
        body=block('consolidate 5m ".* i/o timeout$" warning show_first', "stacktrace"),
        want=ErrorsConfig(
            stacktrace=True,
            consolidate=(rule(".* i/o timeout$", 300.0, logging.WARNING, show_first=True),),
        ),
    ),
    SetupCase(
        body=block('consolidate 30s "^Failed to .+"', "consolidate 1h30m x info"),
        want=ErrorsConfig(
            consolidate=(rule("^Failed to .+", 30.0), rule("x", 5400.0, logging.INFO))
        ),
    ),
    SetupCase(
        body=block("consolidate 1.5s x show_first"),
        want=ErrorsConfig(consolidate=(rule("x", 1.5, show_first=True),)),
    ),
    SetupCase(
        body=block("consolidate 500ms x debug", "consolidate 1s y error"),
        want=ErrorsConfig(consolidate=(rule("x", 0.5, logging.DEBUG), rule("y", 1.0))),
    ),
    SetupCase(
        body=block(f"consolidate 1s {'a' * MAX_REGEXP_CHARS}"),
        want=ErrorsConfig(consolidate=(rule("a" * MAX_REGEXP_CHARS, 1.0),)),
    ),
    SetupCase(body="errors stderr", want="Corefile:2: errors: invalid log file: stderr"),
    SetupCase(body="errors stdout x", want="Corefile:2: errors: expected 0 to 1 arguments, got 2"),
    SetupCase(body=block("bogus"), want="Corefile:3: errors: unknown property 'bogus'"),
    SetupCase(
        body=block("stacktrace yes"),
        want="Corefile:3: errors: stacktrace: expected no arguments, got 1",
    ),
    SetupCase(
        body=block("consolidate 5m"),
        want="Corefile:3: errors: consolidate: expected 2 to 4 arguments, got 1",
    ),
    SetupCase(
        body=block("consolidate 5m x error show_first extra"),
        want="Corefile:3: errors: consolidate: expected 2 to 4 arguments, got 5",
    ),
    SetupCase(
        body=block("consolidate 5x x"),
        want="Corefile:3: errors: consolidate: time: invalid duration '5x'",
    ),
    SetupCase(
        body=block("consolidate 0s x"),
        want="Corefile:3: errors: consolidate: duration must be positive, got 0s",
    ),
    SetupCase(
        body=block(f"consolidate 1s {'a' * (MAX_REGEXP_CHARS + 1)}"),
        want="Corefile:3: errors: consolidate: regexp too long: 10001 > 10000 characters",
    ),
    SetupCase(
        body=block('consolidate 1s "(x"'),
        want="Corefile:3: errors: consolidate: invalid regexp '(x': "
        "missing ), unterminated subpattern at position 0",
    ),
    SetupCase(
        body=block("consolidate 1s x fatal"),
        want="Corefile:3: errors: consolidate: unknown option 'fatal'",
    ),
    SetupCase(
        body=block("consolidate 1s x warning error"),
        want="Corefile:3: errors: consolidate: more than one log level",
    ),
    SetupCase(
        body=block("consolidate 1s x show_first warning"),
        want="Corefile:3: errors: consolidate: the log level must come before show_first",
    ),
    SetupCase(
        body="errors\nerrors",
        want="Corefile:3: errors: this plugin can only be used once per Server Block",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=SetupCase.id)
def test_setup(case: SetupCase) -> None:
    corefile = ". {\n" + case.body + "\n    whoami\n}\n"
    if isinstance(case.want, str):
        with pytest.raises(CorefileErrors) as info:
            build_config(corefile)
        assert str(info.value) == case.want
        return
    config = build_config(corefile)
    [blk] = config.blocks
    assert blk.plugins == ("errors", "whoami")
    assert isinstance(blk.head, Errors)
    assert blk.head.config == case.want
    # Only consolidation needs a shutdown hook (to print the summaries of open windows).
    assert len(config.process.shutdown) == (1 if case.want.consolidate else 0)


def test_summary_period_prints_like_go() -> None:
    assert [rule("x", s).period_text for s in (300.0, 30.0, 5400.0, 0.5)] == [
        "5m0s",
        "30s",
        "1h30m0s",
        "500ms",
    ]


def test_readme_examples_set_up() -> None:
    doc = errors_plugin.__doc__ or ""
    for section in ("# errors", "## Name", "## Description", "## Syntax", "## Examples"):
        assert section + "\n" in doc
    examples = re.findall(r"~~~ corefile\n(.*?)~~~", doc.split("## Examples", 1)[1], flags=re.S)
    assert len(examples) == 2
    for corefile in examples:
        blk = build_config(corefile).blocks[0]
        assert blk.plugins[0] == "errors"


# --- logging one error ---------------------------------------------------------------------------


async def test_error_line_and_rcode(logs: pytest.LogCaptureFixture) -> None:
    nxt = Failing(timeout_error())
    handler = Errors(ErrorsConfig(), nxt, Consolidator(()))
    req = make_request("Example.COM.", "AAAA")
    w = RecordingWriter(req)
    assert await handler.serve(req, w) == rc.SERVFAIL
    assert not w.written  # the reply is the server's business
    assert lines(logs) == [
        (logging.ERROR, f"2 example.com. AAAA: plugin/forward: {TIMEOUT}"),
    ]


async def test_returned_rcode_is_the_errors(logs: pytest.LogCaptureFixture) -> None:
    handler = Errors(ErrorsConfig(), Failing(timeout_error("denied", rc.REFUSED)), Consolidator(()))
    assert await serve_errors(handler, "example.org.", "TXT") == rc.REFUSED
    assert lines(logs) == [(logging.ERROR, "5 example.org. TXT: plugin/forward: denied")]


async def test_written_reply_is_left_alone(logs: pytest.LogCaptureFixture) -> None:
    class WritesThenFails:
        name: ClassVar[str] = "stub"

        async def serve(self, req: Request, w: ResponseWriter) -> int:
            w.write(req.reply(rcode=rc.NXDOMAIN), "stub")
            raise PluginError("stub", "after the write", rcode=rc.NXDOMAIN)

    handler = Errors(ErrorsConfig(), WritesThenFails(), Consolidator(()))
    req = make_request("example.org.")
    w = RecordingWriter(req)
    assert await handler.serve(req, w) == rc.NXDOMAIN
    reply = w.reply()
    assert reply is not None and len(w.sent) == 1
    assert int(reply.header.rcode) == rc.NXDOMAIN and reply.header.aa == 1
    assert lines(logs) == [(logging.ERROR, "3 example.org. A: plugin/stub: after the write")]


async def test_success_passes_through_silently(logs: pytest.LogCaptureFixture) -> None:
    nxt = Failing(code=rc.NXDOMAIN)
    handler = Errors(ErrorsConfig(), nxt, Consolidator(()))
    assert await serve_errors(handler) == rc.NXDOMAIN
    assert nxt.calls == 1
    assert lines(logs) == []


async def test_crash_is_not_an_error(logs: pytest.LogCaptureFixture) -> None:
    handler = Errors(ErrorsConfig(), Failing(KeyError("bug")), Consolidator(()))
    with pytest.raises(KeyError):
        await serve_errors(handler)
    assert lines(logs) == []


async def test_no_next_plugin(logs: pytest.LogCaptureFixture) -> None:
    handler = Errors(ErrorsConfig(), None, Consolidator(()))
    assert await serve_errors(handler, "example.org.") == rc.SERVFAIL
    assert lines(logs) == [(logging.ERROR, "2 example.org. A: plugin/errors: no next plugin found")]


async def test_built_chain_errors_then_log(logs: pytest.LogCaptureFixture) -> None:
    # `log` is last, so it has no next plugin: it logs the SERVFAIL the server will send and
    # returns the error, which `errors` logs.
    logs.set_level(logging.INFO, logger="clusterdns.querylog")
    blk = build_config('. {\n    log . "{name} {rcode}"\n    errors\n}\n').blocks[0]
    assert blk.plugins == ("errors", "log")
    code, w = await serve(blk, make_request("example.org."))
    assert code == rc.SERVFAIL and not w.written
    assert lines(logs) == [(logging.ERROR, "2 example.org. A: plugin/log: no next plugin found")]
    assert [r.getMessage() for r in logs.records if r.name == "clusterdns.querylog"] == [
        "example.org. SERVFAIL"
    ]


# --- consolidation -------------------------------------------------------------------------------


def consolidating(*rules: Consolidate, exc: PluginError | None = None) -> tuple[Errors, FakeTimers]:
    timers = FakeTimers()
    handler = Errors(
        ErrorsConfig(consolidate=rules),
        Failing(exc or timeout_error()),
        Consolidator(rules, call_later=timers),
    )
    return handler, timers


async def test_consolidate(logs: pytest.LogCaptureFixture) -> None:
    handler, timers = consolidating(rule(".* i/o timeout$", 30.0, logging.WARNING))
    for _ in range(3):
        assert await serve_errors(handler) == rc.SERVFAIL
    assert lines(logs) == []
    assert [t.delay_s for t in timers.timers] == [30.0]  # one window, opened by the first error
    timers.fire()
    assert lines(logs) == [
        (logging.WARNING, "3 errors like '.* i/o timeout$' occurred in last 30s"),
    ]
    # The next error opens a new window.
    logs.clear()
    await serve_errors(handler)
    assert len(timers.pending) == 1
    timers.fire()
    assert lines(logs) == [
        (logging.WARNING, "1 errors like '.* i/o timeout$' occurred in last 30s"),
    ]


async def test_consolidate_show_first(logs: pytest.LogCaptureFixture) -> None:
    handler, timers = consolidating(rule("i/o timeout$", 300.0, logging.WARNING, show_first=True))
    await serve_errors(handler)
    first = (logging.WARNING, f"2 example.com. A: plugin/forward: {TIMEOUT}")
    assert lines(logs) == [first]
    await serve_errors(handler)
    await serve_errors(handler)
    assert lines(logs) == [first]
    timers.fire()
    assert lines(logs) == [
        first,
        (logging.WARNING, "3 errors like 'i/o timeout$' occurred in last 5m0s"),
    ]


async def test_show_first_alone_prints_no_summary(logs: pytest.LogCaptureFixture) -> None:
    handler, timers = consolidating(rule("timeout", show_first=True))
    await serve_errors(handler)
    timers.fire()
    assert lines(logs) == [(logging.ERROR, f"2 example.com. A: plugin/forward: {TIMEOUT}")]
    assert timers.pending == []


@pytest.mark.parametrize(
    "level", [logging.WARNING, logging.ERROR, logging.INFO, logging.DEBUG], ids=logging.getLevelName
)
async def test_level(logs: pytest.LogCaptureFixture, level: int) -> None:
    handler, timers = consolidating(rule("timeout", 1.0, level, show_first=True))
    await serve_errors(handler)
    await serve_errors(handler)
    timers.fire()
    assert [lvl for lvl, _ in lines(logs)] == [level, level]


async def test_first_matching_pattern_wins(logs: pytest.LogCaptureFixture) -> None:
    rules = (rule("^nothing$", 10.0), rule("timeout", 20.0), rule("i/o", 30.0))
    handler, timers = consolidating(*rules)
    await serve_errors(handler)
    await serve_errors(handler)
    assert [t.delay_s for t in timers.timers] == [20.0]
    timers.fire()
    assert lines(logs) == [(logging.ERROR, "2 errors like 'timeout' occurred in last 20s")]


async def test_unmatched_errors_are_logged_at_once(logs: pytest.LogCaptureFixture) -> None:
    handler, timers = consolidating(rule("^refused"), exc=timeout_error("connection reset"))
    await serve_errors(handler)
    assert lines(logs) == [(logging.ERROR, "2 example.com. A: plugin/forward: connection reset")]
    assert timers.timers == []


async def test_shutdown_prints_open_windows_then_stops_consolidating(
    logs: pytest.LogCaptureFixture,
) -> None:
    rules = (rule("timeout", 60.0, logging.WARNING),)
    timers = FakeTimers()
    consolidator = Consolidator(rules, call_later=timers)
    handler = Errors(ErrorsConfig(consolidate=rules), Failing(timeout_error()), consolidator)
    await serve_errors(handler)
    await serve_errors(handler)
    await consolidator.stop()
    assert timers.pending == []
    assert lines(logs) == [(logging.WARNING, "2 errors like 'timeout' occurred in last 1m0s")]
    logs.clear()
    await serve_errors(handler)
    assert lines(logs) == [(logging.WARNING, f"2 example.com. A: plugin/forward: {TIMEOUT}")]
    assert timers.pending == []


async def test_windows_run_on_the_event_loop(logs: pytest.LogCaptureFixture) -> None:
    # Through setup, as the server builds it: the window's end is a real loop timer.
    config = build_config(". {\n" + block("consolidate 1h timeout") + "\n}\n")
    head = config.blocks[0].head
    assert isinstance(head, Errors)
    [window] = head.consolidator.windows
    assert await serve_errors(head) == rc.SERVFAIL  # no next plugin: "no next plugin found"
    assert lines(logs) == [(logging.ERROR, "2 example.com. A: plugin/errors: no next plugin found")]
    logs.clear()

    head.next = Failing(timeout_error())
    await serve_errors(head)
    await serve_errors(head)
    assert window.open and window.count == 2
    [hook] = config.process.shutdown
    await hook()
    assert not window.open
    assert lines(logs) == [(logging.ERROR, "2 errors like 'timeout' occurred in last 1h0m0s")]
