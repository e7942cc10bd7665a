from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import pytest
from dnslib import EDNS0, RR, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clusterdns.plugins.log as log_plugin
import clusterdns.plugins.log.format as log_format_module
import clusterdns.plugins.log.handler as log_handler_module
from clusterdns.chain.fastpath import Offer
from clusterdns.chain.handler import Handler
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.setup import BlockSettings, SetupContext
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import parse
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.response import class_of, classify, uncompressed_size
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.plugins.log import (
    COMBINED_FORMAT,
    COMMON_FORMAT,
    QUERY_LOGGER,
    Log,
    LogConfig,
    ResponseClass,
    Rule,
)
from clusterdns.plugins.log.format import Entry, compile_format, seconds_text
from tests.dnstest import LOCAL, REMOTE, RecordingWriter, build_config, make_request, new_process

SUCCESS, DENIAL, ERROR, ALL = (
    ResponseClass.SUCCESS,
    ResponseClass.DENIAL,
    ResponseClass.ERROR,
    ResponseClass.ALL,
)
SOA_LINE = (
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
)
DURATION = r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?s"
"""A Go-style seconds value: no exponent, no trailing zeros."""


# --- helpers -------------------------------------------------------------------------------------


def request(
    qname: str = "example.org.",
    qtype: str = "A",
    *,
    qid: int = 4242,
    proto: str = "udp",
    remote: tuple[str, int] = REMOTE,
    local: tuple[str, int] = LOCAL,
    edns_size: int | None = None,
    do: bool = False,
    cd: bool = False,
    opcode: int = 0,
) -> Request:
    """A query with every header detail the log line shows under the test's control."""
    q = DNSRecord.question(qname, qtype)
    q.header.id = qid
    q.header.cd = int(cd)
    q.header.opcode = opcode
    if edns_size is not None:
        q.add_ar(EDNS0(udp_len=edns_size, flags="do" if do else ""))
    wire = q.pack()
    return Request(DNSRecord.parse(wire), wire, proto=proto, remote=remote, local=local)


Behaviour = Callable[[Request, ResponseWriter], int]


class Stub:
    """The next plugin: does whatever the test tells it to."""

    name: ClassVar[str] = "stub"

    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.calls = 0

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls += 1
        return self.behave(req, w)


def reply_of(
    req: Request,
    *,
    rcode: int = rc.NOERROR,
    answer: Sequence[str] = (),
    auth: Sequence[str] = (),
    aa: bool = True,
) -> DNSRecord:
    msg = req.reply(aa=aa, rcode=rcode)
    for line in answer:
        msg.add_answer(*RR.fromZone(line))
    for line in auth:
        msg.add_auth(*RR.fromZone(line))
    return msg


def writes(
    *, rcode: int = rc.NOERROR, answer: Sequence[str] = (), auth: Sequence[str] = ()
) -> Behaviour:
    def behave(req: Request, w: ResponseWriter) -> int:
        w.write(reply_of(req, rcode=rcode, answer=answer, auth=auth), "stub")
        return rcode

    return behave


def returns(code: int) -> Behaviour:
    return lambda req, w: code


def raises(exc: Exception) -> Behaviour:
    def behave(req: Request, w: ResponseWriter) -> int:
        raise exc

    return behave


def log_handler(lines: str, nxt: Handler | None) -> Handler:
    """Run the log plugin's setup on `lines` (inside a `.` block) and build it before `nxt`."""
    blocks = parse(". {\n" + lines + "\n}\n", "Corefile", DIRECTIVES)
    ctx = SetupContext(BlockSettings(0, (), "Corefile", 1, ("log",)), new_process())
    factory = log_plugin.setup(blocks[0].lines_of("log"), ctx)
    return factory(nxt)


def query_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == QUERY_LOGGER]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=QUERY_LOGGER)


async def run(lines: str, behave: Behaviour, req: Request | None = None) -> tuple[int, Stub]:
    stub = Stub(behave)
    handler = log_handler(lines, stub)
    req = req or make_request("example.org.")
    code = await handler.serve(req, RecordingWriter(req))
    return code, stub


def assert_line(line: str, before_duration: str, after: str = "") -> None:
    assert re.fullmatch(re.escape(before_duration) + DURATION + re.escape(after), line), line


# --- setup ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    body: str
    want: tuple[Rule, ...] | str

    def id(self) -> str:
        return self.body.replace("\n", "⏎")


def rule(name: str = ".", fmt: str = COMMON_FORMAT, *classes: ResponseClass) -> Rule:
    return Rule(name=name, format=fmt, classes=frozenset(classes or (ALL,)))


SETUP_CASES = [
    SetupCase(body="log", want=(rule(),)),
    SetupCase(body="log Example.ORG", want=(rule("example.org."),)),
    SetupCase(
        body="log example.org. example.net", want=(rule("example.org."), rule("example.net."))
    ),
    SetupCase(body="log . {common}", want=(rule(),)),
    SetupCase(body="log . {combined}", want=(rule(".", COMBINED_FORMAT),)),
    SetupCase(
        body='log a.org b.org "{name} {type}"',
        want=(rule("a.org.", "{name} {type}"), rule("b.org.", "{name} {type}")),
    ),
    SetupCase(body='log . "x {common} y"', want=(rule(".", f"x {COMMON_FORMAT} y"),)),
    # Q28: a single argument is a NAME even when it looks like a format.
    SetupCase(body='log "{remote} {name}"', want=(rule("{remote} {name}."),)),
    SetupCase(body="log . {\n    class denial\n}", want=(rule(".", COMMON_FORMAT, DENIAL),)),
    SetupCase(
        body="log . {\n    class denial\n    class success error\n}",
        want=(rule(".", COMMON_FORMAT, DENIAL, SUCCESS, ERROR),),
    ),
    SetupCase(body="log . {\n    class all error\n}", want=(rule(".", COMMON_FORMAT, ALL, ERROR),)),
    SetupCase(body="log . {\n}", want=(rule(),)),
    SetupCase(
        body='log a.org {\n    class error\n}\nlog b.org c.org "{name}"',
        want=(
            rule("a.org.", COMMON_FORMAT, ERROR),
            rule("b.org.", "{name}"),
            rule("c.org.", "{name}"),
        ),
    ),
    SetupCase(
        body="log . {\n    class\n}",
        want="Corefile:3: log: class: expected at least 1 argument, got 0",
    ),
    SetupCase(
        body="log . {\n    class denial bogus\n}",
        want="Corefile:3: log: invalid class 'bogus': want success, denial, error or all",
    ),
    SetupCase(
        body="log . {\n    class Denial\n}",
        want="Corefile:3: log: invalid class 'Denial': want success, denial, error or all",
    ),
    SetupCase(
        body="log . {\n    format {name}\n}", want="Corefile:3: log: unknown property 'format'"
    ),
    SetupCase(
        body="log . {\n    class error {\n        x\n    }\n}",
        want="Corefile:3: log: class takes no block",
    ),
    SetupCase(
        body="log\nlog . {\n    classes error\n}",
        want="Corefile:4: log: unknown property 'classes'",
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
    block = build_config(corefile).blocks[0]
    assert block.plugins == ("log", "whoami")
    assert isinstance(block.head, Log)
    assert block.head.config == LogConfig(rules=case.want)


def _examples(doc: str) -> list[str]:
    return re.findall(r"~~~ corefile\n(.*?)~~~", doc, flags=re.S)


def test_readme_examples_set_up() -> None:
    doc = log_plugin.__doc__ or ""
    for section in ("# log", "## Name", "## Description", "## Syntax", "## Examples"):
        assert section + "\n" in doc
    examples = _examples(doc.split("## Examples", 1)[1])
    assert len(examples) == 3
    for corefile in examples:
        block = build_config(corefile).blocks[0]
        assert "log" in block.plugins
        assert isinstance(block.head, Log)


# --- formats -------------------------------------------------------------------------------------


async def test_spec_example_line(caplog: pytest.LogCaptureFixture) -> None:
    req = request("nosuch.prod.svc.cluster.local.", qid=40263, remote=("10.244.1.30", 52311))
    code, _ = await run("log", writes(rcode=rc.NXDOMAIN, auth=[SOA_LINE]), req)
    assert code == rc.NXDOMAIN
    [line] = query_lines(caplog)
    assert_line(
        line,
        '10.244.1.30:52311 - 40263 "A IN nosuch.prod.svc.cluster.local. udp 47 false 512" '
        "NXDOMAIN qr,aa,rd 140 ",
    )


async def test_common_format_through_a_built_chain(caplog: pytest.LogCaptureFixture) -> None:
    block = build_config(". {\n    log\n    whoami\n}\n").blocks[0]
    req = make_request("Example.ORG.", "A", edns_size=1232, do=True)
    assert block.head is not None
    w = RecordingWriter(req)
    assert await block.head.serve(req, w) == rc.NOERROR
    [line] = query_lines(caplog)
    # whoami: A (27 bytes) and SRV (35 bytes) in the additional section; rsize is uncompressed
    # (dnslib sends 69 bytes) and counted before the server mirrors the OPT record.
    assert_line(
        line,
        f'10.240.0.1:40212 - {req.id} "A IN example.org. udp 40 true 1232" NOERROR qr,aa,rd 91 ',
    )


async def test_combined_format(caplog: pytest.LogCaptureFixture) -> None:
    req = request(qid=7, proto="tcp", remote=("2001:db8::7", 5353), opcode=0)
    await run("log . {combined}", writes(answer=["example.org. 30 IN A 192.0.2.1"]), req)
    [line] = query_lines(caplog)
    assert_line(
        line,
        '[2001:db8::7]:5353 - 7 "A IN example.org. tcp 29 false 65535" NOERROR qr,aa,rd 56 ',
        ' "0"',
    )


ALL_FIELDS = (
    "{type}|{name}|{class}|{proto}|{remote}|{local}|{port}|{size}|{rcode}|{rsize}|{>rflags}"
    "|{>bufsize}|{>do}|{>id}|{>opcode}|{/meta}|{/}|{bogus}|{>ID}|{a{name}|} x {|100% {type}"
)


@pytest.mark.parametrize(
    ("req", "want"),
    [
        (
            request("WWW.Example.ORG.", "AAAA", qid=1, remote=("10.0.0.9", 1000)),
            "AAAA|www.example.org.|IN|udp|10.0.0.9|127.0.0.1|1000|33|NOERROR|76|qr,aa,rd|512"
            "|false|1|0|-|-|{bogus}|{>ID}|{awww.example.org.|} x {|100% AAAA",
        ),
        (
            request(
                "www.example.org.",
                "AAAA",
                qid=65535,
                proto="tcp",
                remote=("::1", 2),
                local=("fd00::53", 53),
                edns_size=4096,
                do=True,
                cd=True,
            ),
            "AAAA|www.example.org.|IN|tcp|[::1]|[fd00::53]|2|44|NOERROR|76|qr,aa,rd,cd|65535"
            "|true|65535|0|-|-|{bogus}|{>ID}|{awww.example.org.|} x {|100% AAAA",
        ),
        (
            request("www.example.org.", "AAAA", qid=3, edns_size=100),
            "AAAA|www.example.org.|IN|udp|10.240.0.1|127.0.0.1|40212|44|NOERROR|76|qr,aa,rd|512"
            "|false|3|0|-|-|{bogus}|{>ID}|{awww.example.org.|} x {|100% AAAA",
        ),
    ],
)
async def test_every_placeholder(caplog: pytest.LogCaptureFixture, req: Request, want: str) -> None:
    await run(
        f'log . "{ALL_FIELDS}"', writes(answer=["www.example.org. 30 IN AAAA 2001:db8::1"]), req
    )
    assert query_lines(caplog) == [want]


@pytest.mark.parametrize(
    ("fmt", "want"),
    [
        ("", ""),
        ("no placeholders", "no placeholders"),
        ("{name}", "example.org."),
        ("{{name}}", "{example.org.}"),
        ("{ {type} }", "{ A }"),
        ("} {type}", "} A"),
        ("{type", "{type"),
        ("{unknown} {type}", "{unknown} A"),
        ("{/log/class}", "-"),
        ("%s %d %(x)s {type} %%", "%s %d %(x)s A %%"),
        ("{common}", "{common}"),
        ("{>do}{>bufsize}{>opcode}", "false5120"),
    ],
)
def test_compile_format(fmt: str, want: str) -> None:
    entry = Entry(make_request("example.org."), None, 0, time.perf_counter_ns())
    assert compile_format(fmt).render(entry) == want


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_characters="}")))
def test_text_without_placeholders_is_copied(text: str) -> None:
    entry = Entry(make_request("example.org."), None, 0, 0)
    assert compile_format(text).render(entry) == text


@pytest.mark.parametrize(
    ("ns", "want"),
    [
        (0, "0s"),
        (1, "0.000000001s"),
        (151_000, "0.000151s"),
        (37_990_251, "0.037990251s"),
        (1_500_000_000, "1.5s"),
        (2_000_000_000, "2s"),
        (12_345_678_901, "12.345678901s"),
    ],
)
def test_seconds_text(ns: int, want: str) -> None:
    assert seconds_text(ns) == want


async def test_duration_measures_the_rest_of_the_chain(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks: Iterator[int] = iter([5_000_000, 5_151_000])
    clock = SimpleNamespace(perf_counter_ns=lambda: next(ticks))
    monkeypatch.setattr(log_handler_module, "time", clock)
    monkeypatch.setattr(log_format_module, "time", clock)
    await run('log . "{duration}"', writes())
    assert query_lines(caplog) == ["0.000151s"]


def test_uncompressed_size_leaves_the_message_alone() -> None:
    req = make_request("nosuch.prod.svc.cluster.local.")
    msg = reply_of(req, rcode=rc.NXDOMAIN, auth=[SOA_LINE])
    before = msg.pack()
    assert uncompressed_size(msg) == 140
    assert len(before) < 140  # dnslib compresses
    assert msg.pack() == before


# --- classes and rules ---------------------------------------------------------------------------

NS_LINE = "example.org. 30 IN NS ns1.example.org."
A_LINE = "example.org. 30 IN A 192.0.2.1"


@pytest.mark.parametrize(
    ("qtype", "rcode", "answer", "auth", "opcode", "want"),
    [
        ("A", rc.NOERROR, [A_LINE], [], 0, SUCCESS),
        ("A", rc.NOERROR, [], [], 0, SUCCESS),
        ("A", rc.NOERROR, [], [NS_LINE], 0, SUCCESS),  # referral
        ("A", rc.NOERROR, [], [SOA_LINE], 0, DENIAL),  # NODATA
        ("A", rc.NXDOMAIN, [], [SOA_LINE], 0, DENIAL),
        ("A", rc.NXDOMAIN, [], [], 0, DENIAL),
        ("A", rc.NXDOMAIN, [A_LINE], [SOA_LINE], 0, ERROR),
        ("A", rc.SERVFAIL, [], [], 0, ERROR),
        ("A", rc.REFUSED, [], [], 0, ERROR),
        ("A", rc.FORMERR, [], [], 0, ERROR),
        ("A", rc.NOTIMP, [], [], 0, ERROR),
        ("A", 6, [], [], 0, ERROR),  # YXDOMAIN
        ("AXFR", rc.NOERROR, [A_LINE], [], 0, ERROR),
        ("IXFR", rc.NOERROR, [A_LINE], [], 0, ERROR),
        ("SOA", rc.NOERROR, [], [], 4, ERROR),  # NOTIFY
        ("SOA", rc.NOERROR, [], [], 5, ERROR),  # UPDATE
    ],
)
def test_classify(
    qtype: str,
    rcode: int,
    answer: list[str],
    auth: list[str],
    opcode: int,
    want: ResponseClass,
) -> None:
    msg = reply_of(
        request("example.org.", qtype, opcode=opcode), rcode=rcode, answer=answer, auth=auth
    )
    assert class_of(classify(msg)) is want


def test_no_reply_is_an_error() -> None:
    assert class_of(classify(None)) is ERROR


OUTCOMES: dict[str, Behaviour] = {
    "success": writes(answer=[A_LINE]),
    "nodata": writes(auth=[SOA_LINE]),
    "nxdomain": writes(rcode=rc.NXDOMAIN, auth=[SOA_LINE]),
    "servfail-written": writes(rcode=rc.SERVFAIL),
    "servfail-returned": returns(rc.SERVFAIL),
    "refused-raised": raises(PluginError("stub", "no", rcode=rc.REFUSED)),
}
FAILURES = {"servfail-written", "servfail-returned", "refused-raised"}


@pytest.mark.parametrize(
    ("classes", "logged"),
    [
        ("", set(OUTCOMES)),
        ("class all", set(OUTCOMES)),
        ("class success", {"success"}),
        ("class denial", {"nodata", "nxdomain"}),
        ("class error", FAILURES),
        ("class denial error", {"nodata", "nxdomain"} | FAILURES),
        ("class denial\n class success", {"success", "nodata", "nxdomain"}),
        ("class success all", set(OUTCOMES)),
    ],
)
async def test_classes_select_replies(
    caplog: pytest.LogCaptureFixture, classes: str, logged: set[str]
) -> None:
    seen: set[str] = set()
    for outcome, behave in OUTCOMES.items():
        caplog.clear()
        with contextlib.suppress(PluginError):
            await run("log . {\n" + classes + "\n}", behave)
        if query_lines(caplog):
            seen.add(outcome)
    assert seen == logged


async def test_first_matching_rule_only(caplog: pytest.LogCaptureFixture) -> None:
    lines = 'log Example.ORG {\n class denial\n}\nlog . "other {name}"'
    stub = Stub(writes(answer=["www.example.org. 30 IN A 192.0.2.1"]))
    handler = log_handler(lines, stub)
    for qname in ("www.EXAMPLE.org.", "example.org.", "example.net.", "notexample.org."):
        req = make_request(qname)
        await handler.serve(req, RecordingWriter(req))
    # example.org names match the first rule, which selects only denials; the `.` rule is never
    # consulted for them.
    assert query_lines(caplog) == ["other example.net.", "other notexample.org."]
    assert stub.calls == 4


async def test_several_names_share_a_format(caplog: pytest.LogCaptureFixture) -> None:
    handler = log_handler('log a.org b.org "{name} {rcode}"', Stub(writes()))
    for qname in ("x.a.org.", "b.org.", "c.org.", "a.org.b.org."):
        req = make_request(qname)
        assert await handler.serve(req, RecordingWriter(req)) == rc.NOERROR
    assert query_lines(caplog) == ["x.a.org. NOERROR", "b.org. NOERROR", "a.org.b.org. NOERROR"]


async def test_q28_single_argument_is_a_name(caplog: pytest.LogCaptureFixture) -> None:
    code, stub = await run('log "{remote} {name}"', writes())
    assert (code, stub.calls) == (rc.NOERROR, 1)
    assert query_lines(caplog) == []
    await run('log . "{remote} {name}"', writes())
    assert query_lines(caplog) == ["10.240.0.1 example.org."]


# --- no reply and errors -------------------------------------------------------------------------

ERROR_FMT = 'log . "{rcode} {>rflags} {rsize} {size}"'


@pytest.mark.parametrize(
    ("code", "want"),
    [
        (rc.SERVFAIL, "SERVFAIL qr,rd 29 29"),
        (rc.REFUSED, "REFUSED qr,rd 29 29"),
        (rc.FORMERR, "FORMERR qr,rd 29 29"),
        (rc.NOTIMP, "NOTIMP qr,rd 29 29"),
        (rc.NOERROR, "- - 0 29"),  # a drop: no reply at all
        (rc.NXDOMAIN, "- - 0 29"),
    ],
)
async def test_nothing_written_describes_the_server_reply(
    caplog: pytest.LogCaptureFixture, code: int, want: str
) -> None:
    got, _ = await run(ERROR_FMT, returns(code))
    assert got == code
    assert query_lines(caplog) == [want]


async def test_server_reply_copies_cd(caplog: pytest.LogCaptureFixture) -> None:
    await run('log . "{>rflags}"', returns(rc.SERVFAIL), request(cd=True))
    assert query_lines(caplog) == ["qr,rd,cd"]


async def test_plugin_error_is_logged_and_reraised(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(PluginError) as info:
        await run(ERROR_FMT, raises(PluginError("stub", "upstream timeout")))
    assert str(info.value) == "plugin/stub: upstream timeout"
    assert query_lines(caplog) == ["SERVFAIL qr,rd 29 29"]


async def test_plugin_error_after_a_write_describes_the_written_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def behave(req: Request, w: ResponseWriter) -> int:
        w.write(reply_of(req, answer=[A_LINE]), "stub")
        raise PluginError("stub", "late", rcode=rc.SERVFAIL)

    with pytest.raises(PluginError):
        await run(ERROR_FMT, behave)
    assert query_lines(caplog) == ["NOERROR qr,aa,rd 56 29"]


async def test_crash_propagates_without_a_line(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ZeroDivisionError):
        await run("log", raises(ZeroDivisionError("bug")))
    assert query_lines(caplog) == []


async def test_no_next_plugin(caplog: pytest.LogCaptureFixture) -> None:
    handler = log_handler(ERROR_FMT, None)
    req = make_request("example.org.")
    with pytest.raises(PluginError) as info:
        await handler.serve(req, RecordingWriter(req))
    assert str(info.value) == "plugin/log: no next plugin found"
    assert query_lines(caplog) == ["SERVFAIL qr,rd 29 29"]


async def test_unknown_rcode_prints_its_number(caplog: pytest.LogCaptureFixture) -> None:
    await run('log . "{rcode}"', writes(rcode=12))
    assert query_lines(caplog) == ["12"]


async def test_query_log_off_still_serves(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=QUERY_LOGGER)
    code, stub = await run("log", writes(answer=[A_LINE]))
    assert (code, stub.calls) == (rc.NOERROR, 1)
    assert query_lines(caplog) == []


async def test_query_lines_use_the_unprefixed_logger(caplog: pytest.LogCaptureFixture) -> None:
    await run("log", writes())
    [record] = [r for r in caplog.records if r.name == QUERY_LOGGER]
    assert QUERY_LOGGER == "clusterdns.querylog"
    assert record.levelno == logging.INFO


# --- fast path -----------------------------------------------------------------------------------


def offers(offer: Offer) -> Behaviour:
    def behave(req: Request, w: ResponseWriter) -> int:
        w.offer_fastpath(offer)
        w.write(reply_of(req, answer=[A_LINE]), "stub")
        return rc.NOERROR

    return behave


@pytest.mark.parametrize(
    ("lines", "logged"),
    [
        ("log", True),
        ("log . {\n class denial\n}", False),  # not selected: replays would not be logged either
        ("log other.org", False),  # no rule covers the name
    ],
)
async def test_fastpath_offer_only_for_replies_not_logged(
    caplog: pytest.LogCaptureFixture, lines: str, logged: bool
) -> None:
    offer = Offer(slot=3, generation=7)
    handler = log_handler(lines, Stub(offers(offer)))
    req = make_request("example.org.")
    w = RecordingWriter(req)
    assert await handler.serve(req, w) == rc.NOERROR
    assert w.written and len(w.sent) == 1
    assert bool(query_lines(caplog)) is logged
    assert w.offer == (None if logged else offer)
