from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import dns.flags
import dns.message
import pytest
from dnslib import RR, A

from clusterdns.chain.handler import PluginFactory
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.setup import BlockSettings, SetupContext
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import ServerBlock, parse
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.zones import parse_key
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.plugins import SETUP
from clusterdns.plugins import bufsize as bufsize_plugin
from clusterdns.plugins.bufsize import NAME, SPEC, Bufsize, BufsizeConfig
from clusterdns.plugins.bufsize import parse as parse_bufsize
from tests.dnstest import (
    RecordingWriter,
    build_config,
    first_block,
    make_request,
    new_process,
    serve,
)

QNAME = "big.example.org."
RECORDS = 100


def context_for(sb: ServerBlock, index: int = 0) -> SetupContext:
    keys = tuple(k for t in sb.keys for k in parse_key(t.text, 53))
    names = tuple(d.name for d in sb.directives)
    return SetupContext(BlockSettings(index, keys, sb.file, sb.line, names), new_process())


def factory_for(corefile: str) -> PluginFactory:
    """Run bufsize's setup on the first block of `corefile` and return its factory."""
    sb = parse(corefile, "Corefile", DIRECTIVES)[0]
    factory = SPEC.setup(sb.lines_of(NAME), context_for(sb))
    assert factory is not None
    return factory


@dataclass
class BigAnswer:
    """Answers every query with RECORDS A records; remembers the EDNS size it was shown."""

    name: ClassVar[str] = "bigtest"
    seen: list[int | None] = field(default_factory=list)

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.seen.append(None if req.edns is None else req.edns.udp_size)
        reply = req.reply()
        for i in range(RECORDS):
            reply.add_answer(RR(req.qname, rc.A, rdata=A(f"10.0.{i // 250}.{i % 250 + 1}"), ttl=5))
        w.write(reply, self.name)
        return rc.NOERROR


# -- setup -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    line: str
    size: int | None = None
    error: str | None = None


SETUP_CASES = [
    SetupCase(line="bufsize", size=1232),
    SetupCase(line="bufsize 512", size=512),
    SetupCase(line="bufsize 1024", size=1024),
    SetupCase(line="bufsize 4096", size=4096),
    # Only the first line counts; later lines are not read (spec §3.6).
    SetupCase(line="bufsize 1024\n    bufsize 2048", size=1024),
    SetupCase(line="bufsize\n    bufsize 99999", size=1232),
    SetupCase(
        line="bufsize 511",
        error="Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '511'",
    ),
    SetupCase(
        line="bufsize 4097",
        error="Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '4097'",
    ),
    SetupCase(
        line="bufsize 0",
        error="Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '0'",
    ),
    SetupCase(
        line="bufsize -1232",
        error="Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '-1232'",
    ),
    SetupCase(
        line="bufsize 1k",
        error="Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '1k'",
    ),
    SetupCase(
        line="bufsize 1232.0",
        error="Corefile:2: bufsize: SIZE must be an integer from 512 to 4096, got '1232.0'",
    ),
    SetupCase(
        line="bufsize 1232 4096",
        error="Corefile:2: bufsize: expected 0 to 1 arguments, got 2",
    ),
    SetupCase(
        line="bufsize 1232 {\n    }",
        error="Corefile:2: bufsize: bufsize takes no block",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.line)
def test_setup(case: SetupCase) -> None:
    corefile = f". {{\n    {case.line}\n    whoami\n}}\n"
    if case.error is None:
        block = build_config(corefile).blocks[0]
        assert block.plugins == ("bufsize", "whoami")
        assert isinstance(block.head, Bufsize)
        assert block.head.size == case.size
    else:
        with pytest.raises(CorefileErrors) as exc:
            build_config(corefile)
        assert str(exc.value) == case.error


def test_parse_returns_config() -> None:
    sb = parse(". {\n    bufsize 2048\n}\n", "Corefile", DIRECTIVES)[0]
    assert parse_bufsize(sb.lines_of(NAME)[0]) == BufsizeConfig(size=2048)
    sb = parse(". {\n    bufsize\n}\n", "Corefile", DIRECTIVES)[0]
    assert parse_bufsize(sb.lines_of(NAME)[0]) == BufsizeConfig(size=1232)


def test_registered() -> None:
    assert SETUP[NAME] is SPEC


# -- behaviour -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServeCase:
    name: str
    corefile_line: str
    client_size: int | None
    proto: str = "udp"
    seen_size: int | None
    """The EDNS size the next plugin sees (None: no OPT)."""
    reply_opt_size: int | None
    """The payload size in the reply's OPT record (None: no OPT)."""
    truncated: bool
    max_bytes: int


SERVE_CASES = [
    ServeCase(
        name="lowered to the default 1232, reply truncated there",
        corefile_line="bufsize",
        client_size=4096,
        seen_size=1232,
        reply_opt_size=1232,
        truncated=True,
        max_bytes=1232,
    ),
    ServeCase(
        name="4096 allowed, client advertises 4096: nothing cut",
        corefile_line="bufsize 4096",
        client_size=4096,
        seen_size=4096,
        reply_opt_size=4096,
        truncated=False,
        max_bytes=4096,
    ),
    ServeCase(
        name="smaller client size is never raised",
        corefile_line="bufsize 4096",
        client_size=1000,
        seen_size=1000,
        reply_opt_size=1000,
        truncated=True,
        max_bytes=1000,
    ),
    ServeCase(
        name="client below 512 keeps its size; the writer still allows 512",
        corefile_line="bufsize 1232",
        client_size=300,
        seen_size=300,
        reply_opt_size=300,
        truncated=True,
        max_bytes=512,
    ),
    ServeCase(
        name="custom limit",
        corefile_line="bufsize 600",
        client_size=1232,
        seen_size=600,
        reply_opt_size=600,
        truncated=True,
        max_bytes=600,
    ),
    ServeCase(
        name="no OPT: nothing added, 512-byte limit",
        corefile_line="bufsize",
        client_size=None,
        seen_size=None,
        reply_opt_size=None,
        truncated=True,
        max_bytes=512,
    ),
    ServeCase(
        name="TCP: size lowered, but TCP replies are not cut",
        corefile_line="bufsize",
        client_size=4096,
        proto="tcp",
        seen_size=1232,
        reply_opt_size=1232,
        truncated=False,
        max_bytes=65535,
    ),
]


@pytest.mark.parametrize("case", SERVE_CASES, ids=lambda c: c.name)
async def test_serve(case: ServeCase) -> None:
    big = BigAnswer()
    handler = factory_for(f". {{\n    {case.corefile_line}\n}}\n")(big)
    req = make_request(QNAME, "A", proto=case.proto, edns_size=case.client_size)
    w = RecordingWriter(req)

    assert await handler.serve(req, w) == rc.NOERROR

    assert big.seen == [case.seen_size]
    assert len(w.sent) == 1
    wire = bytes(w.sent[0])
    assert len(wire) <= case.max_bytes
    msg = dns.message.from_wire(wire)
    assert bool(msg.flags & dns.flags.TC) == case.truncated
    answers = sum(len(rrset) for rrset in msg.answer)
    if case.truncated:
        assert 0 < answers < RECORDS
    else:
        assert answers == RECORDS
    if case.reply_opt_size is None:
        assert msg.edns == -1
    else:
        assert msg.edns == 0
        assert msg.payload == case.reply_opt_size


async def test_do_bit_and_options_survive_the_lowering() -> None:
    big = BigAnswer()
    handler = factory_for(". {\n    bufsize\n}\n")(big)
    req = make_request(QNAME, "A", edns_size=4096, do=True)
    original = req.edns
    assert original is not None
    await handler.serve(req, RecordingWriter(req))
    assert req.edns == original.with_size(1232)
    assert req.do


async def test_in_a_corefile_chain() -> None:
    block = first_block("example.org {\n    bufsize 1024\n    whoami\n}\n")
    _, w = await serve(block, make_request("example.org.", "A", edns_size=4096))
    msg = dns.message.from_wire(bytes(w.sent[0]))
    assert msg.payload == 1024
    assert w.plugin == "whoami"


async def test_no_next_plugin_is_a_plugin_error() -> None:
    handler = factory_for(". {\n    bufsize\n}\n")(None)
    req = make_request(QNAME, "A", edns_size=4096)
    with pytest.raises(PluginError, match=r"^plugin/bufsize: "):
        await handler.serve(req, RecordingWriter(req))


# -- README ----------------------------------------------------------------------------------


def test_readme_sections_and_examples() -> None:
    doc = bufsize_plugin.__doc__
    assert doc is not None
    for section in ("# bufsize", "## Name", "## Description", "## Syntax", "## Examples"):
        assert f"\n{section}\n" in f"\n{doc}"
    corefiles = re.findall(r"~~~ corefile\n(.*?)~~~", doc, flags=re.S)
    assert corefiles
    for text in corefiles:
        config = build_config(text)
        for block in config.blocks:
            assert isinstance(block.head, Bufsize)
            assert 512 <= block.head.size <= 4096
