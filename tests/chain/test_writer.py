"""The writer packs before it records anything: a reply that does not pack is SERVFAIL."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from dnslib import NSEC, RR, A, DNSRecord

from clusterdns.chain.fastpath import FastPath, Generations
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter, Writer
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import PluginError
from clusterdns.metrics import Metrics
from clusterdns.server.mux import Mux
from clusterdns.server.responder import Responder
from tests.dnstest import LOCAL, REMOTE, RecordingWriter, first_block, make_request

NSEC_TYPE = 47


def unpackable_reply(req: Request) -> DNSRecord:
    """A reply dnslib cannot encode: an NSEC whose type bitmap is empty (IndexError in dnslib)."""
    reply = req.reply()
    reply.add_answer(RR(req.owner, NSEC_TYPE, rdata=NSEC(".", []), ttl=60))
    return reply


def test_a_reply_that_does_not_pack_raises_and_leaves_the_writer_unwritten() -> None:
    req = make_request("example.org.", "NSEC")
    w = RecordingWriter(req)
    with pytest.raises(PluginError) as exc:
        w.write(unpackable_reply(req), "forward")
    assert str(exc.value).startswith("plugin/forward: reply does not pack: IndexError")
    assert exc.value.rcode == rc.SERVFAIL
    assert not w.written and w.msg is None and w.sent == [] and w.wire == b""
    w.write(req.reply(aa=False, rcode=rc.SERVFAIL), "")  # what the server writes next
    assert w.written and w.rcode == rc.SERVFAIL and len(w.sent) == 1
    reply = DNSRecord.parse(w.sent[0])
    assert reply.header.rcode == rc.SERVFAIL and str(reply.q.qname) == "example.org."


def test_a_reply_that_packs_is_written_once() -> None:
    req = make_request("example.org.")
    w = RecordingWriter(req)
    reply = req.reply()
    reply.add_answer(RR(req.owner, rc.A, rdata=A("192.0.2.1"), ttl=60))
    w.write(reply, "test")
    w.write(req.reply(rcode=rc.SERVFAIL), "other")  # ignored
    assert w.written and w.plugin == "test" and w.rcode == rc.NOERROR and len(w.sent) == 1
    assert w.rsize == len(w.sent[0]) and not w.truncated


class _Unpackable:
    """A plugin whose reply dnslib cannot encode (as forward relaying an odd upstream NSEC)."""

    name: ClassVar[str] = "unpackable"

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        w.write(unpackable_reply(req), self.name)
        return rc.NOERROR


@pytest.mark.parametrize("proto", ["udp", "tcp"])
async def test_the_client_gets_servfail_and_no_panic_is_counted(proto: str) -> None:
    block = first_block(".:53 {\n    whoami\n}\n")
    block.head = _Unpackable()
    metrics = Metrics()
    responder = Responder(
        mux=Mux({".": block}), fastpath=FastPath(Generations()), metrics=metrics, server="dns://:53"
    )
    sent: list[bytes] = []
    query = bytes(DNSRecord.question("example.org.", "NSEC").pack())
    task = responder.submit(query, proto, REMOTE, LOCAL, sent.append)
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert len(sent) == 1, sent
    reply = DNSRecord.parse(sent[0])
    assert reply.header.rcode == rc.SERVFAIL and reply.header.id == int.from_bytes(query[:2])
    assert str(reply.q.qname) == "example.org." and not reply.rr
    assert metrics.panics.get() == 0


async def test_a_plugin_error_from_the_writer_is_logged_by_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    block = first_block(".:53 {\n    errors\n    whoami\n}\n")
    assert block.head is not None
    errors = block.head
    errors.next = _Unpackable()  # type: ignore[attr-defined]
    req = make_request("example.org.", "NSEC")
    w = Writer(req, lambda wire: None)
    with caplog.at_level("ERROR"):
        code = await errors.serve(req, w)
    assert code == rc.SERVFAIL and not w.written
    assert "2 example.org. NSEC: plugin/unpackable: reply does not pack" in caplog.text
