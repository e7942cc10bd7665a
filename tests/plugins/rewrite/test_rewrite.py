from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from typing import ClassVar

import pytest
from dnslib import CNAME, EDNS0, RR, A, DNSRecord, EDNSOption
from dnslib.dns import RD
from dnslib.label import DNSBuffer, DNSLabel
from hypothesis import given
from hypothesis import strategies as st

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.errors import PluginError
from clusterdns.plugins.rewrite import Rewrite, revert_reply
from clusterdns.plugins.rewrite.handler import record_value, wire_label
from tests.dnstest import (
    LOCAL,
    REMOTE,
    Case,
    RecordingWriter,
    build_config,
    dig,
    make_request,
    rrs,
    running_server,
    serve,
    udp_exchange,
)

# -- helpers ---------------------------------------------------------------------------------

Script = Callable[[Request], DNSRecord | int]


class Backend:
    """The next plugin: records every request it sees and answers with a script.

    The script returns a reply to write, or an rcode to return without writing.
    """

    name: ClassVar[str] = "backend"

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or answer_a
        self.seen: list[Request] = []
        self.written: list[DNSRecord] = []
        self.offer: Offer | None = None

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.seen.append(req)
        out = self.script(req)
        if isinstance(out, int):
            return out
        self.written.append(out)
        if self.offer is not None:
            w.offer_fastpath(self.offer)
        w.write(out, self.name)
        return rc.NOERROR

    @property
    def last(self) -> Request:
        return self.seen[-1]


def answer_a(req: Request) -> DNSRecord:
    reply = req.reply()
    reply.add_answer(*RR.fromZone(f"{req.qname} 60 IN A 10.0.0.1"))
    return reply


def reply_with(*lines: str, section: str = "answer") -> Script:
    def script(req: Request) -> DNSRecord:
        reply = req.reply()
        for line in lines:
            text = line.replace("{q}", req.qname)
            for rr in RR.fromZone(text):
                {"answer": reply.add_answer, "ns": reply.add_auth, "extra": reply.add_ar}[section](
                    rr
                )
        return reply

    return script


def rewrite(lines: str, backend: Backend) -> Rewrite:
    """The rewrite handler of a Corefile's `rewrite` lines, in front of `backend`."""
    head = build_config(". {\n" + lines + "    whoami\n}\n").blocks[0].head
    assert isinstance(head, Rewrite)
    return Rewrite(head.rules, backend)


async def ask(
    handler: Rewrite, qname: str, qtype: str = "A", *, edns_size: int | None = None
) -> tuple[int, RecordingWriter, Request]:
    req = make_request(qname, qtype, edns_size=edns_size)
    w = RecordingWriter(req)
    code = await handler.serve(req, w)
    return code, w, req


def reply_of(w: RecordingWriter) -> DNSRecord:
    reply = w.reply()
    assert reply is not None, "nothing written"
    return reply


def question(msg: DNSRecord) -> tuple[str, str]:
    return str(msg.q.qname), rc.type_name(int(msg.q.qtype))


# -- the Kubernetes alias case, end to end ---------------------------------------------------

ALIAS_COREFILE = """.:{port} {{
    rewrite name exact registry.example.com registry.tools.svc.cluster.local
    hosts {{
        10.96.9.9 registry.tools.svc.cluster.local
        fallthrough
    }}
    whoami
}}
"""


async def test_alias_answers_under_the_original_name() -> None:
    block = build_config(ALIAS_COREFILE.format(port=53)).blocks[0]
    assert block.plugins == ("rewrite", "hosts", "whoami")
    _, w = await serve(block, make_request("registry.example.com.", "A"))
    Case(
        qname="registry.example.com.",
        answer=["registry.example.com. 3600 IN A 10.96.9.9"],
        flags="qr aa rd",
    ).check(w.reply())
    assert question(reply_of(w)) == ("registry.example.com.", "A")
    # Letter case of the question is kept, in the question and the answer.
    _, w = await serve(block, make_request("Registry.Example.COM.", "A"))
    Case(qname="Registry.Example.COM.", answer=["Registry.Example.COM. 3600 IN A 10.96.9.9"]).check(
        w.reply()
    )
    assert str(reply_of(w).q.qname) == "Registry.Example.COM."
    # Other names are untouched.
    _, w = await serve(block, make_request("registry.tools.svc.cluster.local.", "A"))
    Case(
        qname="registry.tools.svc.cluster.local.",
        answer=["registry.tools.svc.cluster.local. 3600 IN A 10.96.9.9"],
    ).check(w.reply())


async def test_alias_over_the_real_server() -> None:
    async with running_server(ALIAS_COREFILE.format(port=0)) as server:
        query = DNSRecord.question("registry.example.com.", "A")
        reply = DNSRecord.parse(await udp_exchange(server.port(), bytes(query.pack())))
        assert reply.header.id == query.header.id
        assert question(reply) == ("registry.example.com.", "A")
        assert [str(r) for r in reply.rr] == rrs("registry.example.com. 3600 IN A 10.96.9.9")
        out = await dig(server.port(), "registry.example.com", "A")
        assert "status: NOERROR" in out
        assert re.search(r"^registry\.example\.com\.\s+3600\s+IN\s+A\s+10\.96\.9\.9$", out, re.M)
        assert "mismatch" not in out


# -- the rewritten request -------------------------------------------------------------------


async def test_next_plugins_see_a_new_request_and_the_client_message_is_untouched() -> None:
    backend = Backend()
    handler = rewrite("    rewrite name exact a.example.org b.example.org\n", backend)
    req = make_request("a.example.org.", "A", edns_size=1232, do=True)
    req.zone = "example.org."
    wire, q = req.wire, req.msg.q
    w = RecordingWriter(req)
    await handler.serve(req, w)
    seen = backend.last
    assert seen is not req
    assert (seen.qname, seen.name, seen.qtype) == ("b.example.org.", "b.example.org.", 1)
    assert seen.zone == "example.org." and seen.remote == req.remote and seen.proto == "udp"
    assert seen.edns == req.edns  # size and DO as the client sent them
    assert DNSRecord.parse(seen.wire).q.qname == "b.example.org."
    assert seen.id == req.id and seen.msg.header.rd == 1
    # The client's request is exactly as it came in.
    assert req.wire == wire and req.msg.q is q and str(req.msg.q.qname) == "a.example.org."
    assert req.qname == "a.example.org."


async def test_edns_size_lowered_by_bufsize_is_kept() -> None:
    backend = Backend()
    handler = rewrite("    rewrite name exact a.example.org b.example.org\n", backend)
    req = make_request("a.example.org.", "A", edns_size=4096)
    req.edns = req.edns.with_size(1232) if req.edns is not None else None
    await handler.serve(req, RecordingWriter(req))
    assert backend.last.edns is not None and backend.last.edns.udp_size == 1232


async def test_no_match_passes_the_same_request_and_writer() -> None:
    backend = Backend()
    handler = rewrite("    rewrite name exact a.example.org b.example.org\n", backend)
    code, w, req = await ask(handler, "other.example.org.")
    assert backend.last is req
    assert w.msg is backend.written[-1]  # not copied: nothing to revert
    assert code == rc.NOERROR


# -- name rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "qname", "rewritten", "owner"),
    [
        # suffix without answer auto: the question is restored, the owner is not
        (
            "    rewrite name suffix .example.org .example.net\n",
            "www.example.org.",
            "www.example.net.",
            "www.example.net.",
        ),
        (
            "    rewrite name suffix .example.org .example.net answer auto\n",
            "www.Example.org.",
            "www.example.net.",
            "www.example.org.",  # a suffix swap, as CoreDNS: the lower-cased name
        ),
        (
            "    rewrite name prefix foo bar\n",
            "foo.example.org.",
            "bar.example.org.",
            "bar.example.org.",
        ),
        (
            "    rewrite name prefix foo bar answer auto\n",
            "foo.example.org.",
            "bar.example.org.",
            "foo.example.org.",
        ),
        (
            "    rewrite name substring service.us-west-1.example.org service.us-west-1.consul\n",
            "ftp.service.us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
            "ftp.service.us-west-1.consul.",
        ),
        (
            "    rewrite name substring service.us-west-1.example.org service.us-west-1.consul "
            "answer auto\n",
            "ftp.service.us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
            "ftp.service.us-west-1.example.org.",
        ),
        (
            "    rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul\n",
            "ftp-us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
            "ftp.service.us-west-1.consul.",
        ),
        (
            "    rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul "
            "answer auto\n",
            "FTP-us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
            "FTP-us-west-1.example.org.",
        ),
        (
            "    rewrite stop {\n"
            "        name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul\n"
            "        answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org\n"
            "    }\n",
            "ftp-us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
            "ftp-us-west-1.example.org.",
        ),
    ],
)
async def test_name_rules(lines: str, qname: str, rewritten: str, owner: str) -> None:
    backend = Backend()
    handler = rewrite(lines, backend)
    _, w, _ = await ask(handler, qname)
    assert backend.last.qname == rewritten
    reply = reply_of(w)
    assert question(reply) == (qname, "A")  # stop rule: the client's question is back
    assert [str(r.rname) for r in reply.rr] == [owner]


@pytest.mark.parametrize(
    ("lines", "qname"),
    [
        ("    rewrite name suffix .example.org .example.net\n", "www.example.com."),
        ("    rewrite name prefix ftp- www-\n", "ftp-x.example.org."),  # FROM became "ftp-."
        ("    rewrite name substring us-west us-east\n", "a.us-west-1.example.org."),
        ("    rewrite name regex ^www\\.(.*) {1}\n", "ftp.example.org."),
    ],
)
async def test_name_rules_that_do_not_match(lines: str, qname: str) -> None:
    backend = Backend()
    _, w, req = await ask(rewrite(lines, backend), qname)
    assert backend.last is req
    assert w.msg is backend.written[-1]


ALL_VALUES = [
    "{q} 60 IN CNAME b.example.org.",
    "{q} 60 IN PTR x.b.example.org.",
    "{q} 60 IN NS ns.b.example.org.",
    "{q} 60 IN MX 10 mail.b.example.org.",
    "{q} 60 IN SRV 0 5 80 B.example.org.",
    "{q} 60 IN SOA b.example.org. hostmaster.b.example.org. 1 2 3 4 5",
    '{q} 60 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.b.example.org.',
    "{q} 60 IN TXT b.example.org.",
    "{q} 60 IN CNAME other.example.",
]


@pytest.mark.parametrize("section", ["answer", "ns", "extra"])
async def test_answer_auto_maps_record_values_back(section: str) -> None:
    backend = Backend(reply_with(*ALL_VALUES, section=section))
    handler = rewrite("    rewrite name exact a.example.org b.example.org\n", backend)
    _, w, _ = await ask(handler, "a.example.org.", "ANY")
    reply = reply_of(w)
    records = {"answer": reply.rr, "ns": reply.auth, "extra": reply.ar}[section]
    assert [str(r) for r in records] == rrs(
        "a.example.org. 60 IN CNAME a.example.org.",
        "a.example.org. 60 IN PTR x.a.example.org.",
        "a.example.org. 60 IN NS ns.a.example.org.",
        "a.example.org. 60 IN MX 10 mail.a.example.org.",
        "a.example.org. 60 IN SRV 0 5 80 a.example.org.",
        "a.example.org. 60 IN SOA a.example.org. hostmaster.b.example.org. 1 2 3 4 5",
        'a.example.org. 60 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.a.example.org.',
        "a.example.org. 60 IN TXT b.example.org.",  # not a name: untouched
        "a.example.org. 60 IN CNAME other.example.",
    )
    # The reply the backend wrote (which a cache may hold) is unchanged.
    written = backend.written[-1]
    original = {"answer": written.rr, "ns": written.auth, "extra": written.ar}[section]
    assert len(original) == 9
    assert {str(r.rname) for r in original} == {"b.example.org."}
    assert str(original[0].rdata) == "b.example.org."


def dname_rr(owner: str, target: str) -> RR:
    buf = DNSBuffer()
    buf.encode_name_nocompress(DNSLabel(target))
    return RR(owner, 39, ttl=60, rdata=RD(bytes(buf.data)))


async def test_answer_auto_maps_dname_targets_back() -> None:
    def script(req: Request) -> DNSRecord:
        reply = req.reply()
        reply.add_answer(dname_rr(req.qname, "sub.b.example.org."))
        return reply

    backend = Backend(script)
    _, w, _ = await ask(
        rewrite("    rewrite name exact a.example.org b.example.org\n", backend), "a.example.org."
    )
    (record,) = reply_of(w).rr
    assert str(record.rname) == "a.example.org."
    assert record_value(record) == "sub.a.example.org."


async def test_answer_value_rewrites_names_in_data() -> None:
    backend = Backend(
        reply_with(
            "{q} 60 IN PTR ftp-us-west-1.service.consul.",
            "{q} 60 IN SRV 0 0 80 web.service.consul.",
        )
    )
    lines = (
        "    rewrite stop {\n        name suffix .arpa .arpa\n"
        "        answer value (.*)\\.service\\.consul\\. {1}.example.org\n    }\n"
    )
    _, w, _ = await ask(rewrite(lines, backend), "30.30.30.10.in-addr.arpa.", "PTR")
    assert [str(r) for r in reply_of(w).rr] == rrs(
        "30.30.30.10.in-addr.arpa. 60 IN PTR ftp-us-west-1.example.org.",
        "30.30.30.10.in-addr.arpa. 60 IN SRV 0 0 80 web.example.org.",
    )


@given(
    labels=st.lists(
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
        min_size=1,
        max_size=4,
    ),
    upper=st.booleans(),
)
def test_exact_and_suffix_round_trip(labels: list[str], upper: bool) -> None:
    """Whatever the name, `answer auto` gives the client back the name it asked for."""
    name = ".".join(labels) + ".example.org."
    if upper:
        name = name.upper()
    for lines in (
        f"    rewrite name exact {name} target.svc.cluster.local\n",
        "    rewrite name suffix .example.org .svc.cluster.local answer auto\n",
    ):
        backend = Backend(reply_with("{q} 60 IN A 10.0.0.1", "{q} 60 IN CNAME x.{q}"))
        handler = rewrite(lines, backend)
        req = make_request(name, "A")
        w = RecordingWriter(req)
        asyncio.run(handler.serve(req, w))
        reply = reply_of(w)
        assert backend.last.name.endswith(".svc.cluster.local.")
        assert str(reply.q.qname) == name
        assert {str(r.rname).lower() for r in reply.rr} == {name.lower()}
        assert str(reply.rr[1].rdata).lower() == "x." + name.lower()


# -- type, class -----------------------------------------------------------------------------


async def test_type_any_to_hinfo() -> None:
    backend = Backend(reply_with('{q} 60 IN TXT "hinfo"'))
    _, w, _ = await ask(rewrite("    rewrite type ANY HINFO\n", backend), "example.org.", "ANY")
    assert backend.last.qtype == rc.HINFO and backend.last.type_name == "HINFO"
    reply = reply_of(w)
    assert question(reply) == ("example.org.", "ANY")  # a stop rule restores the question
    assert [str(r) for r in reply.rr] == rrs('example.org. 60 IN TXT "hinfo"')


async def test_class_rule_changes_the_class() -> None:
    backend = Backend()
    await ask(rewrite("    rewrite class IN CH\n", backend), "version.bind.", "TXT")
    assert backend.last.qclass == 3


# -- Q30: continue rules without a reply change ----------------------------------------------


@pytest.mark.parametrize(
    ("lines", "want"),
    [
        ("    rewrite continue type ANY HINFO\n", ("example.org.", "HINFO")),
        ("    rewrite type ANY HINFO\n", ("example.org.", "ANY")),
        (
            "    rewrite continue name suffix .org .net\n",
            ("example.net.", "ANY"),
        ),
        ("    rewrite continue name suffix .org .net answer auto\n", ("example.org.", "ANY")),
        ("    rewrite continue name exact example.org example.net\n", ("example.org.", "ANY")),
        ("    rewrite continue edns0 local set 0xffee abcd\n", ("example.org.", "ANY")),
        (
            "    rewrite continue type ANY HINFO\n    rewrite ttl example.org 30\n",
            ("example.org.", "ANY"),
        ),
    ],
)
async def test_q30_question_in_reply(lines: str, want: tuple[str, str]) -> None:
    backend = Backend()
    _, w, _ = await ask(rewrite(lines, backend), "example.org.", "ANY")
    assert question(reply_of(w)) == want


async def test_q30_unwritten_failure_carries_the_rewritten_question() -> None:
    backend = Backend(lambda req: rc.SERVFAIL)
    code, w, _ = await ask(
        rewrite("    rewrite continue type ANY HINFO\n", backend), "example.org.", "ANY"
    )
    reply = reply_of(w)
    assert code == rc.SERVFAIL and int(reply.header.rcode) == rc.SERVFAIL
    assert question(reply) == ("example.org.", "HINFO")
    assert reply.header.aa == 0 and reply.header.rd == 1


# -- stop and continue -----------------------------------------------------------------------


async def test_stop_ends_rule_processing() -> None:
    backend = Backend()
    lines = (
        "    rewrite name exact a.example.org b.example.org\n"
        "    rewrite name exact b.example.org c.example.org\n"
    )
    _, w, _ = await ask(rewrite(lines, backend), "a.example.org.")
    assert backend.last.qname == "b.example.org."
    assert [str(r.rname) for r in reply_of(w).rr] == ["a.example.org."]


async def test_continue_chains_and_replies_revert_in_reverse_order() -> None:
    backend = Backend(reply_with("{q} 5 IN A 10.0.0.1", "{q} 500 IN CNAME x.{q}"))
    lines = (
        "    rewrite continue name exact a.example.org b.example.org\n"
        "    rewrite continue ttl b.example.org 30-300\n"
        "    rewrite name regex ^b\\.(.*)\\.$ c.{1} answer auto\n"
        "    rewrite name exact c.example.org d.example.org\n"
    )
    _, w, _ = await ask(rewrite(lines, backend), "a.example.org.")
    assert backend.last.qname == "c.example.org."  # the regex rule stopped processing
    assert [str(r) for r in reply_of(w).rr] == rrs(
        "a.example.org. 30 IN A 10.0.0.1", "a.example.org. 300 IN CNAME x.a.example.org."
    )


async def test_unmatched_stop_rule_does_not_stop() -> None:
    backend = Backend()
    lines = (
        "    rewrite name exact nothere.example.org x.example.org\n"
        "    rewrite name exact a.example.org b.example.org\n"
    )
    await ask(rewrite(lines, backend), "a.example.org.")
    assert backend.last.qname == "b.example.org."


# -- ttl -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("30-300", [30, 100, 300, 30]),
        ("-30", [5, 30, 30, 0]),
        ("30-", [30, 100, 1000, 30]),
        ("60", [60, 60, 60, 60]),
    ],
)
async def test_ttl_clamps(spec: str, want: list[int]) -> None:
    backend = Backend(
        reply_with(
            "{q} 5 IN A 10.0.0.1",
            "{q} 100 IN A 10.0.0.2",
            "{q} 1000 IN A 10.0.0.3",
            "{q} 0 IN A 10.0.0.4",
        )
    )
    _, w, _ = await ask(
        rewrite(f"    rewrite ttl suffix example.org {spec}\n", backend), "www.example.org.", "A"
    )
    assert [int(r.ttl) for r in reply_of(w).rr] == want
    assert [int(r.ttl) for r in backend.written[-1].rr] == [5, 100, 1000, 0]


async def test_ttl_applies_to_every_section_but_not_the_opt_record() -> None:
    def script(req: Request) -> DNSRecord:
        reply = req.reply()
        reply.add_answer(*RR.fromZone(f"{req.qname} 5 IN A 10.0.0.1"))
        reply.add_auth(*RR.fromZone("example.org. 5 IN NS ns.example.org."))
        reply.add_ar(*RR.fromZone("ns.example.org. 5 IN A 10.0.0.53"))
        reply.add_ar(EDNS0(udp_len=1232, flags="do"))
        return reply

    backend = Backend(script)
    _, w, _ = await ask(
        rewrite("    rewrite ttl example.org 60\n", backend), "example.org.", "A", edns_size=1232
    )
    reply = reply_of(w)
    assert [int(r.ttl) for r in reply.rr + reply.auth] == [60, 60]
    assert [int(r.ttl) for r in reply.ar if r.rtype != rc.OPT] == [60]


# -- rcode -----------------------------------------------------------------------------------


async def test_rcode_rewrites_an_unwritten_failure() -> None:
    backend = Backend(lambda req: rc.SERVFAIL)
    code, w, _ = await ask(
        rewrite("    rewrite rcode regex (.*)\\.example\\.org SERVFAIL NOERROR\n", backend),
        "broken.example.org.",
    )
    reply = reply_of(w)
    assert int(reply.header.rcode) == rc.NOERROR and code == rc.NOERROR
    assert question(reply) == ("broken.example.org.", "A")


async def test_rcode_rewrites_a_written_reply() -> None:
    def nxdomain(req: Request) -> DNSRecord:
        reply = req.reply(rcode=rc.NXDOMAIN)
        reply.add_auth(*RR.fromZone("example.org. 60 IN SOA ns. host. 1 2 3 4 5"))
        return reply

    backend = Backend(nxdomain)
    handler = rewrite("    rewrite rcode example.org NXDOMAIN 0\n", backend)
    _, w, _ = await ask(handler, "example.org.")
    assert int(reply_of(w).header.rcode) == rc.NOERROR
    _, w, _ = await ask(handler, "other.example.org.")
    assert int(reply_of(w).header.rcode) == rc.NXDOMAIN


async def test_extended_rcode_goes_into_an_opt_record() -> None:
    backend = Backend(lambda req: rc.SERVFAIL)
    _, w, _ = await ask(rewrite("    rewrite rcode example.org 2 23\n", backend), "example.org.")
    msg = w.msg
    assert msg is not None
    opt = [r for r in msg.ar if r.rtype == rc.OPT]
    assert int(msg.header.rcode) == 23 & 0xF and len(opt) == 1
    assert (int(opt[0].ttl) >> 24) == 23 >> 4


async def test_plugin_error_from_next_is_reverted_and_raised() -> None:
    def fail(req: Request) -> int:
        raise PluginError("forward", "no healthy upstream")

    backend = Backend(fail)
    handler = rewrite("    rewrite name exact a.example.org b.example.org\n", backend)
    req = make_request("a.example.org.", "A")
    w = RecordingWriter(req)
    with pytest.raises(PluginError, match="no healthy upstream"):
        await handler.serve(req, w)
    reply = reply_of(w)
    assert int(reply.header.rcode) == rc.SERVFAIL
    assert question(reply) == ("a.example.org.", "A")


# -- names in the escaped text form (a dot, a backslash or odd bytes inside a label) ---------


def wire_request(labels: tuple[bytes, ...], qtype: str = "A") -> Request:
    """A request for a name given as wire labels (text would split a label holding a dot)."""
    q = DNSRecord.question(".", qtype)
    q.q.qname = DNSLabel(labels)
    wire = bytes(q.pack())
    return Request(parse_message(wire), wire, proto="udp", remote=REMOTE, local=LOCAL)


def labels_of(label: DNSLabel) -> tuple[bytes, ...]:
    return tuple(bytes(x) for x in label.label)


def answer_own_name(req: Request) -> DNSRecord:
    """An A record owned by the question's own labels, and a CNAME to a name below it."""
    reply = req.reply()
    reply.add_answer(RR(req.owner, rc.A, rdata=A("10.0.0.1"), ttl=60))
    target = DNSLabel((b"x", *req.owner.label))
    reply.add_answer(RR(req.owner, rc.CNAME, rdata=CNAME(target), ttl=60))
    return reply


@pytest.mark.parametrize(
    ("lines", "labels", "rewritten", "owner"),
    [
        # FROM written with the escape matches the one label `a.b` only
        (
            "    rewrite name exact a\\.b.example.org c.example.org\n",
            (b"a.b", b"example", b"org"),
            (b"c", b"example", b"org"),
            (b"a.b", b"example", b"org"),
        ),
        # TO written with escapes names a label holding a dot, and byte 255
        (
            "    rewrite name exact c.example.org a\\.b.example.org\n",
            (b"c", b"example", b"org"),
            (b"a.b", b"example", b"org"),
            (b"c", b"example", b"org"),
        ),
        (
            "    rewrite name exact c.example.org \\255.example.org\n",
            (b"c", b"example", b"org"),
            (b"\xff", b"example", b"org"),
            (b"c", b"example", b"org"),
        ),
        # the other labels keep their bytes through suffix, prefix and substring rules
        (
            "    rewrite name suffix .example.org .example.net answer auto\n",
            (b"x.y", b"example", b"org"),
            (b"x.y", b"example", b"net"),
            (b"x.y", b"example", b"org"),
        ),
        (
            "    rewrite name suffix .example.org .example.net answer auto\n",
            (b"\xff\x00", b"a\\b", b"example", b"org"),
            (b"\xff\x00", b"a\\b", b"example", b"net"),
            (b"\xff\x00", b"a\\b", b"example", b"org"),
        ),
        (
            "    rewrite name prefix x x-\n",  # FROM is `x.`, TO `x-.`
            (b"x", b"y.z", b"example", b"org"),
            (b"x-", b"y.z", b"example", b"org"),
            (b"x-", b"y.z", b"example", b"org"),
        ),
        # suffix rules compare text, as CoreDNS's strings.HasSuffix: `x\.b.example.org.` ends
        # with `b.example.org.`
        (
            "    rewrite name suffix b.example.org c.example.org\n",
            (b"x.b", b"example", b"org"),
            (b"x.c", b"example", b"org"),
            (b"x.c", b"example", b"org"),
        ),
        (
            "    rewrite name substring .example. .test. answer auto\n",
            (b"a b", b"example", b"org"),
            (b"a b", b"test", b"org"),
            (b"a b", b"example", b"org"),
        ),
        # a regex sees the escapes: `\\\.` is the dot inside a label
        (
            "    rewrite name regex ^(.*)\\\\\\.(.*)\\.example\\.org\\.$ {1}-{2}.example.org "
            "answer auto\n",
            (b"a.b", b"example", b"org"),
            (b"a-b", b"example", b"org"),
            (b"a.b", b"example", b"org"),
        ),
    ],
)
async def test_escaped_names_round_trip(
    lines: str,
    labels: tuple[bytes, ...],
    rewritten: tuple[bytes, ...],
    owner: tuple[bytes, ...],
) -> None:
    backend = Backend(answer_own_name)
    req = wire_request(labels)
    w = RecordingWriter(req)
    await rewrite(lines, backend).serve(req, w)
    seen = backend.last
    assert labels_of(seen.owner) == rewritten
    assert labels_of(parse_message(seen.wire).q.qname) == rewritten
    reply = parse_message(w.sent[0])
    assert labels_of(reply.q.qname) == labels  # the client's question, byte for byte
    a, cname = reply.rr
    assert labels_of(a.rname) == labels_of(cname.rname) == owner
    assert labels_of(cname.rdata.label) == (b"x", *owner)


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        (".", ()),
        ("a.example.org.", (b"a", b"example", b"org")),
        ("a\\.b.org.", (b"a.b", b"org")),
        ("a\\\\.org.", (b"a\\", b"org")),
        ("\\255\\000\\ .org.", (b"\xff\x00 ", b"org")),
        ("é.org.", ("é".encode(), b"org")),  # UTF-8 bytes, as miekg/dns reads text
        (".".join(["a" * 63] * 3 + ["a" * 61]) + ".", tuple([b"a" * 63] * 3 + [b"a" * 61])),
        (".".join(["a" * 63] * 3 + ["a" * 62]) + ".", None),  # 256 octets on the wire
        ("a.org", None),
        ("a..org.", None),
        ("a\\.", None),
        ("\\256.", None),
    ],
)
def test_wire_label(name: str, labels: tuple[bytes, ...] | None) -> None:
    got = wire_label(name)
    assert (labels_of(got) if got is not None else None) == labels


@pytest.mark.parametrize(
    ("lines", "labels"),
    [
        (
            "    rewrite name exact a\\.b.example.org c.example.org\n",
            (b"a", b"b", b"example", b"org"),
        ),
        ("    rewrite name exact a.b.example.org c.example.org\n", (b"a.b", b"example", b"org")),
        ("    rewrite name regex ^a\\.b\\. c.\n", (b"a.b", b"example", b"org")),
    ],
)
async def test_escaped_names_match_only_their_own_labels(
    lines: str, labels: tuple[bytes, ...]
) -> None:
    """`a.b.example.org` and the label `a.b` under example.org are different names."""
    backend = Backend(answer_own_name)
    req = wire_request(labels)
    await rewrite(lines, backend).serve(req, RecordingWriter(req))
    assert backend.last is req


async def test_answer_auto_maps_back_only_names_below_the_rewritten_name() -> None:
    r"""`x\.b.example.org.` (the label `x.b`) is not below `b.example.org.`; `x.b...` is."""

    def script(req: Request) -> DNSRecord:
        reply = req.reply()
        for labels in ((b"x", b"b", b"example", b"org"), (b"x.b", b"example", b"org")):
            reply.add_answer(RR(req.owner, rc.CNAME, rdata=CNAME(DNSLabel(labels)), ttl=60))
        return reply

    backend = Backend(script)
    handler = rewrite("    rewrite name exact a.example.org b.example.org\n", backend)
    req = make_request("a.example.org.", "CNAME")
    w = RecordingWriter(req)
    await handler.serve(req, w)
    targets = [labels_of(rr.rdata.label) for rr in parse_message(w.sent[0]).rr]
    assert targets == [(b"x", b"a", b"example", b"org"), (b"x.b", b"example", b"org")]


async def test_a_reply_name_that_is_no_name_after_rewrite_is_servfail() -> None:
    backend = Backend(answer_own_name)
    lines = (
        "    rewrite stop {\n        name exact a.example.org b.example.org\n"
        "        answer name (.*)example\\.org\\. {1}.bad\n    }\n"
    )
    req = make_request("a.example.org.", "A")
    w = RecordingWriter(req)
    with pytest.raises(PluginError) as info:
        await rewrite(lines, backend).serve(req, w)
    assert str(info.value) == "invalid name after rewrite: b..bad."
    reply = reply_of(w)
    assert int(reply.header.rcode) == rc.SERVFAIL and not reply.rr
    assert question(reply) == ("a.example.org.", "A")


# -- invalid names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "qname", "bad"),
    [
        ("    rewrite name regex (.*) {1}..example.org\n", "x.org.", "x.org...example.org."),
        (
            "    rewrite name regex (.*) {1}" + "a" * 64 + ".org\n",
            "x.",
            "x." + "a" * 64 + ".org.",
        ),
        ("    rewrite name suffix .org ..org\n", "x.org.", "x..org."),
        ("    rewrite name suffix .org \\256.org\n", "x.org.", "x\\256.org."),  # no byte 256
        ("    rewrite name suffix .org x\\.\n", "x.org.", "xx\\."),  # relative: the label `xx.`
        (
            "    rewrite name suffix .org .\\065" + "b" * 63 + ".\n",  # a label of 64 octets
            "x.org.",
            "x.\\065" + "b" * 63 + ".",
        ),
    ],
)
async def test_invalid_name_after_rewrite(lines: str, qname: str, bad: str) -> None:
    backend = Backend()
    handler = rewrite(lines, backend)
    req = make_request(qname, "A")
    with pytest.raises(PluginError) as info:
        await handler.serve(req, RecordingWriter(req))
    assert str(info.value) == f"invalid name after rewrite: {bad}"
    assert info.value.rcode == rc.SERVFAIL
    assert backend.seen == []


# -- edns0 -----------------------------------------------------------------------------------


def options_of(req: Request) -> list[tuple[int, bytes]]:
    assert req.edns is not None
    opt = [r for r in DNSRecord.parse(req.wire).ar if r.rtype == rc.OPT]
    assert len(opt) == 1
    assert [(int(o.code), bytes(o.data)) for o in opt[0].rdata] == list(req.edns.options)
    return list(req.edns.options)


async def test_edns0_local_set_on_a_query_without_edns() -> None:
    backend = Backend()
    _, w, _ = await ask(
        rewrite("    rewrite edns0 local set 0xffee 0x61626364\n", backend), "example.org."
    )
    assert options_of(backend.last) == [(0xFFEE, b"abcd")]
    assert backend.last.edns is not None and backend.last.edns.udp_size == 4096
    reply = reply_of(w)
    assert [r for r in reply.ar if r.rtype == rc.OPT] == []  # the client sent no EDNS


async def test_edns0_local_set_replaces_and_append_adds() -> None:
    backend = Backend()
    lines = (
        "    rewrite continue edns0 local set 0xffee abcd\n"
        "    rewrite continue edns0 local set 0xffee efgh\n"
        "    rewrite continue edns0 local append 0xfff0 {client_port}\n"
        "    rewrite continue edns0 local replace 0xfff1 nothing\n"
        "    rewrite edns0 local append 0xffef {client_ip}\n"
    )
    await ask(rewrite(lines, backend), "example.org.", edns_size=1232)
    assert options_of(backend.last) == [
        (0xFFEE, b"efgh"),
        (0xFFF0, REMOTE[1].to_bytes(2, "big")),
        (0xFFEF, ipaddress.ip_address(REMOTE[0]).packed),
    ]
    assert backend.last.edns is not None and backend.last.edns.udp_size == 1232


@pytest.mark.parametrize(
    ("variable", "data"),
    [
        ("{qname}", b"example.org."),
        ("{qtype}", b"\x00\x10"),
        ("{client_ip}", bytes([10, 240, 0, 1])),
        ("{client_port}", REMOTE[1].to_bytes(2, "big")),
        ("{server_ip}", bytes([127, 0, 0, 1])),
        ("{server_port}", (53).to_bytes(2, "big")),
        ("{protocol}", b"udp"),
    ],
)
async def test_edns0_local_variables(variable: str, data: bytes) -> None:
    backend = Backend()
    await ask(
        rewrite(f"    rewrite edns0 local set 0xffee {variable}\n", backend), "example.org.", "TXT"
    )
    assert options_of(backend.last) == [(0xFFEE, data)]


async def test_edns0_nsid_subnet_and_unset() -> None:
    backend = Backend()
    lines = (
        "    rewrite continue edns0 nsid set\n"
        "    rewrite continue edns0 subnet set 20 56\n"
        "    rewrite continue edns0 local set 0xffee x\n"
        "    rewrite edns0 local unset 0xffee\n"
    )
    await ask(rewrite(lines, backend), "example.org.", edns_size=1232)
    # 10.240.0.1/20 -> 10.240.0.0, three address bytes.
    assert options_of(backend.last) == [(3, b""), (8, b"\x00\x01\x14\x00" + bytes([10, 240, 0]))]


async def test_edns0_revert_removes_the_option_from_a_relayed_reply() -> None:
    def relayed(req: Request) -> DNSRecord:
        reply = answer_a(req)
        assert req.edns is not None
        reply.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(c, d) for c, d in req.edns.options]))
        return reply

    for revert, want in (("", [(0xFFEE, b"abcd")]), (" revert", [])):
        backend = Backend(relayed)
        _, w, _ = await ask(
            rewrite(f"    rewrite edns0 local set 0xffee abcd{revert}\n", backend),
            "example.org.",
            edns_size=1232,
        )
        msg = w.msg
        assert msg is not None
        (opt,) = [r for r in msg.ar if r.rtype == rc.OPT]
        assert [(int(o.code), bytes(o.data)) for o in opt.rdata] == want


async def test_edns0_revert_restores_a_replaced_option() -> None:
    def relayed(req: Request) -> DNSRecord:
        reply = answer_a(req)
        assert req.edns is not None
        reply.add_ar(EDNS0(opts=[EDNSOption(c, d) for c, d in req.edns.options]))
        return reply

    backend = Backend(relayed)
    handler = rewrite("    rewrite edns0 local replace 0xffee new revert\n", backend)
    query = DNSRecord.question("example.org.", "A")
    query.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(0xFFEE, b"old")]))
    wire = bytes(query.pack())
    req = Request(DNSRecord.parse(wire), wire, proto="udp", remote=REMOTE, local=("127.0.0.1", 53))
    w = RecordingWriter(req)
    await handler.serve(req, w)
    assert options_of(backend.last) == [(0xFFEE, b"new")]
    msg = w.msg
    assert msg is not None
    (opt,) = [r for r in msg.ar if r.rtype == rc.OPT]
    assert [(int(o.code), bytes(o.data)) for o in opt.rdata] == [(0xFFEE, b"old")]


# -- the reverter ----------------------------------------------------------------------------


async def test_fastpath_offer_passes_through() -> None:
    backend = Backend()
    backend.offer = Offer(slot=1, generation=2)
    _, w, _ = await ask(
        rewrite("    rewrite name exact a.example.org b.example.org\n", backend), "a.example.org."
    )
    assert w.offer == Offer(slot=1, generation=2)


def test_revert_reply_restores_a_missing_question() -> None:
    original = make_request("a.example.org.", "A").msg.q
    reply = DNSRecord()
    reply.header.qr = 1
    out = revert_reply(reply, original, [])
    assert out.q is original and reply.questions == []


@pytest.mark.parametrize(
    ("rule", "replayable"),
    [
        ("edns0 local set 0xffee {qname}", True),
        ("edns0 local set 0xffee abcd", True),
        ("edns0 local set 0xffee {client_ip}", False),
        ("edns0 local set 0xffee {server_port}", False),
        ("edns0 subnet set 24 56", False),
        ("continue edns0 subnet set 24 56", False),
    ],
)
async def test_fastpath_offer_dropped_for_client_dependent_queries(
    rule: str, replayable: bool
) -> None:
    backend = Backend()
    backend.offer = Offer(slot=1, generation=2)
    _, w, _ = await ask(rewrite(f"    rewrite {rule}\n", backend), "a.example.org.")
    assert (w.offer is not None) is replayable
    assert w.written
