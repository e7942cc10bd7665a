from __future__ import annotations

import re
from dataclasses import dataclass

import dns.message
import dns.rdatatype
import pytest

from clusterdns.chain.order import DIRECTIVES, ORDER
from clusterdns.chain.setup import BlockSettings, SetupContext
from clusterdns.corefile import parse
from clusterdns.dnsutil.zones import parse_key
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.plugins import SETUP
from clusterdns.plugins import any as any_plugin
from clusterdns.plugins.any import NAME, SPEC, Any
from tests.dnstest import (
    Case,
    RecordingWriter,
    build_config,
    first_block,
    make_request,
    new_process,
    serve,
)


def hinfo(owner: str, cpu: str, os: str) -> str:
    """An HINFO record in RFC 3597 generic form (dnslib has no HINFO text form)."""
    rdata = b"".join(bytes([len(s)]) + s.encode() for s in (cpu, os))
    return f"{owner} 8482 IN HINFO \\# {len(rdata)} {rdata.hex().upper()}"


CHAIN = """example.org {
    any
    whoami
}
"""


# -- setup -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    error: str | None = None


SETUP_CASES = [
    SetupCase(corefile=". {\n    any\n    whoami\n}\n"),
    # Only the first line counts; a repeated line is accepted without being read (spec §3.6).
    SetupCase(corefile=". {\n    any\n    any extra\n    whoami\n}\n"),
    SetupCase(
        corefile=". {\n    whoami\n    any foo\n}\n",
        error="Corefile:3: any: expected no arguments, got 1",
    ),
    SetupCase(
        corefile=". {\n    any {\n    }\n    whoami\n}\n",
        error="Corefile:2: any: any takes no block",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.corefile)
def test_setup(case: SetupCase) -> None:
    if case.error is None:
        block = build_config(case.corefile).blocks[0]
        assert block.plugins == ("any", "whoami")
        assert isinstance(block.head, Any)
    else:
        with pytest.raises(CorefileErrors) as exc:
            build_config(case.corefile)
        assert str(exc.value) == case.error


def test_registered_and_ordered_before_whoami() -> None:
    assert SETUP[NAME] is SPEC
    assert ORDER.index("any") < ORDER.index("whoami")


# -- behaviour -------------------------------------------------------------------------------


CASES = [
    Case(
        qname="example.org.",
        qtype="ANY",
        answer=[hinfo("example.org.", "ANY obsoleted", "See RFC 8482")],
        flags="qr rd",
    ),
    # The owner keeps the client's letter case.
    Case(
        qname="WwW.Example.ORG.",
        qtype="ANY",
        answer=[hinfo("WwW.Example.ORG.", "ANY obsoleted", "See RFC 8482")],
        flags="qr rd",
    ),
    # Other types reach whoami, which answers authoritatively.
    Case(
        qname="example.org.",
        qtype="A",
        extra=["example.org. 0 IN A 10.240.0.1", "_udp.example.org. 0 IN SRV 0 0 40212 ."],
        flags="qr aa rd",
    ),
    Case(
        qname="example.org.",
        qtype="HINFO",
        extra=["example.org. 0 IN A 10.240.0.1", "_udp.example.org. 0 IN SRV 0 0 40212 ."],
        flags="qr aa rd",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=Case.id)
async def test_serve(case: Case) -> None:
    code, w = await serve(first_block(CHAIN), case.request())
    assert code == 0
    case.check(w.reply())
    expected_plugin = "any" if case.qtype == "ANY" else "whoami"
    assert w.plugin == expected_plugin


async def test_hinfo_rdata_as_dnspython_reads_it() -> None:
    code, w = await serve(first_block(CHAIN), make_request("example.org.", "ANY"))
    assert code == 0
    msg = dns.message.from_wire(bytes(w.sent[0]))
    assert len(msg.answer) == 1
    rrset = msg.answer[0]
    assert rrset.rdtype == dns.rdatatype.HINFO
    assert rrset.ttl == 8482
    rdata = rrset[0]
    assert (rdata.cpu, rdata.os) == (b"ANY obsoleted", b"See RFC 8482")


async def test_edns_is_mirrored_on_the_hinfo_reply() -> None:
    req = make_request("example.org.", "ANY", edns_size=4096, do=True)
    _, w = await serve(first_block(CHAIN), req)
    msg = dns.message.from_wire(bytes(w.sent[0]))
    assert msg.edns == 0
    assert msg.payload == 4096
    assert msg.answer[0].rdtype == dns.rdatatype.HINFO


async def test_no_next_plugin_is_a_plugin_error() -> None:
    req = make_request("example.org.", "A")
    with pytest.raises(PluginError, match=r"^plugin/any: "):
        await Any(None).serve(req, RecordingWriter(req))


# -- README ----------------------------------------------------------------------------------


def examples(doc: str) -> list[str]:
    return re.findall(r"~~~ corefile\n(.*?)~~~", doc, flags=re.S)


def test_readme_sections_and_examples() -> None:
    doc = any_plugin.__doc__
    assert doc is not None
    for section in ("# any", "## Name", "## Description", "## Syntax", "## Examples"):
        assert f"\n{section}\n" in f"\n{doc}"
    corefiles = examples(doc)
    assert corefiles
    for text in corefiles:
        blocks = parse(text, "Corefile", DIRECTIVES)
        assert blocks
        for index, sb in enumerate(blocks):
            lines = sb.lines_of(NAME)
            assert lines, text
            keys = tuple(k for t in sb.keys for k in parse_key(t.text, 53))
            names = tuple(d.name for d in sb.directives)
            ctx = SetupContext(BlockSettings(index, keys, sb.file, sb.line, names), new_process())
            factory = SPEC.setup(lines, ctx)
            assert factory is not None
            assert isinstance(factory(None), Any)
