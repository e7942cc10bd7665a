"""Fuzz targets: one function per entry point, bytes in, `Violation` out when a property breaks.

The same functions run under atheris (`fuzz/run.py --target X`) and in plain replay (CI, and
`fuzz/run.py --replay`), so a corpus file or a crash reproducer means the same thing in both.
A target catches only the exceptions its entry point documents; anything else escapes and is a
finding. Targets:

- `wire`: the header policy, the bounded walk and the decoder (`dnsutil.wire`, `dnsutil.codec`);
  walk raises only `WireError`, the decoder only `DNSError`; what dnspython accepts strictly, the
  walk accepts too (no false FORMERR), both read the same question, and the decoder reads each
  record at the offset the walk found (`decoder_agrees`).
- `names`: the name codec: the walk's `skip_name` and the decoder's `decode_name` agree with
  each other and with dnspython, labels stay within 63/255 octets, and the text form the chain
  works on (`Request.qname`) names exactly the labels on the wire: as many labels, and read
  back (as a template's owner is) into the same bytes.
- `responder`: a whole query through the server's `Responder` and a kubeadm-like chain
  (reference cluster from YAML, `whoami` standing in for `forward`), over UDP and TCP: exactly
  one well-formed reply (or a drop where the policy says so), same ID, QR set, the question
  echoed, answers about the question, UDP replies within the client's size (and 4,096 bytes),
  no handler crash.
- `corefile`: Corefile text through the parser and every plugin's setup (what `-validate` does):
  blocks, or a `ClusterDNSError` naming the file and line; never another exception.
- `fastpath`: the same query three times through the kubeadm chain with the fast path on; when
  the second reply was a replay it equals, byte for byte after the ID, the full chain's reply.
- `upstream`: a hostile upstream: the bytes after the first are the upstream's reply (its ID
  and question put right by the harness) to a query relayed by `forward` behind `cache`; the
  client gets one well-formed reply about its question, twice (the second from the cache); a
  reply dnslib decodes but cannot encode again reaches the client as SERVFAIL, never silence.

Known bugs (reported, not yet fixed) are raised as `Violation(bug=...)` with the id of `KNOWN`,
so a long fuzzing run can step over them instead of stopping at the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.wire
from dnslib import QTYPE, DNSError, DNSRecord

from clusterdns.chain.build import Block, Config, build
from clusterdns.chain.fastpath import FastPath, Generations
from clusterdns.chain.handler import Handler
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request, edns_of, name_text, text_labels
from clusterdns.chain.setup import ProcessContext
from clusterdns.corefile import parse
from clusterdns.dnsutil import codec
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.wire import (
    HEADER,
    MAX_POINTER_HOPS,
    Verdict,
    WireError,
    header_only_reply,
    header_verdict,
    skip_name,
    walk,
)
from clusterdns.errors import ClusterDNSError, CorefileError, CorefileErrors
from clusterdns.metrics import Metrics
from clusterdns.plugins import SETUP
from clusterdns.plugins.cache import Cache
from clusterdns.plugins.forward.handler import Forward
from clusterdns.plugins.forward.transport import ExchangeError, UpstreamQuery, check_reply
from clusterdns.server.mux import Mux
from clusterdns.server.responder import MAX_UDP_REPLY, UDP_QUERY_BUFFER, Responder
from clusterdns.webserver import HTTPRegistry

ROOT: Final = Path(__file__).resolve().parents[1]
REFERENCE_YAML: Final = ROOT / "tests" / "fixtures" / "k8s" / "reference.yaml"
REMOTE: Final = ("10.244.7.7", 40212)
LOCAL: Final = ("10.244.0.2", 53)
STEP_TIMEOUT_S: Final = 10.0
"""Bound on one query's work in the harness; libFuzzer's own `-timeout` catches real hangs."""
MAX_TCP: Final = 65535

FIXED: Final[dict[str, str]] = {
    "rdata-name": "names inside RDATA decoded without a bound: one packet hung the server "
    "(fixed in 6195b61)",
    "rdlength": "records not held to their RDLENGTH: the decoder read records the walk never "
    "checked (fixed in 6195b61; `decoder_agrees` checks it in the wire target)",
    "text-escapes": "template and hosts rebuilt owner names from the question's text form, which "
    "dnslib IDNA-encodes: `\\255\\254.example.org` was answered as `xn--vdab.example.org` "
    "(fixed: hosts answers with `Request.owner`, template reads names with their escapes)",
    "corefile-nul": "a NUL byte in a file argument escaped setup as ValueError('embedded null "
    "byte') instead of a CorefileError with file:line (fixed: `Directive.path_arg`, and "
    "`chain.build` reports any setup's NUL ValueError at the argument)",
    "relay-repack": "a reply dnslib decodes but cannot encode again (an upstream NSEC with an "
    "empty type bitmap) failed in the writer after it was marked written: the client got no "
    "reply (fixed: the writer packs first and raises PluginError, so the client gets SERVFAIL)",
    "id-pointer": "a question name with a compression pointer into the ID "
    "(`\\x07clustal\\xc0\\x01`) names something else for every ID, but the fast path keys on "
    "the bytes after the ID: the replay answered another name (fixed: "
    "`responder.plain_question`, such queries are never stored)",
    "label-text": "a label holding '.' or '\\' was not escaped in Request.qname, so one label "
    "'api.prod.svc.cluster.local' was answered as the five-label Service name (fixed: the "
    "text form is escaped as miekg/dns writes it)",
    "k8s-text-owner": "the kubernetes plugin built answer owners from the question's text form "
    "(`DNSLabel(req.qname)`: split at every dot, `\\DDD` IDNA-encoded) and split that text at "
    "every dot: with `pods insecure`, byte 0xff in the label left of a pod address came back as "
    "`xn--wda`, byte 0x80 crashed the handler (SERVFAIL) and a label holding a dot was answered "
    "with another owner (fixed: owners are `Request.owner`, names split at unescaped dots only)",
}
"""Bugs found by fuzzing and fixed; their reproducers (`fuzz/crashes/*/fixed.*`) must pass."""

KNOWN: Final[dict[str, str]] = {}
"""Bugs found by fuzzing and reported, not yet fixed; the reproducers are in `fuzz/crashes/`."""


class Violation(AssertionError):
    """A property of a target does not hold for an input."""

    def __init__(self, message: str, *, bug: str | None = None) -> None:
        super().__init__(f"[{bug}] {message}" if bug else message)
        self.bug = bug


def check(condition: bool, message: str, *, bug: str | None = None) -> None:
    """Raise `Violation(message)` unless `condition`."""
    if not condition:
        raise Violation(message, bug=bug)


Harness = Callable[[bytes], None]


# -- helpers -----------------------------------------------------------------------------------
def header(
    qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    """A 12-byte DNS header."""
    return HEADER.pack(qid, flags, qd, an, ns, ar)


def _question_labels(msg: DNSRecord) -> tuple[bytes, ...]:
    return tuple(bytes(label) for label in msg.q.qname.label)


def _dp_labels(name: dns.name.Name) -> tuple[bytes, ...]:
    return tuple(label for label in name.labels if label)


def _same_name(a: tuple[bytes, ...], b: tuple[bytes, ...]) -> bool:
    """DNS name equality: ASCII case-insensitive, label by label."""
    return len(a) == len(b) and all(x.lower() == y.lower() for x, y in zip(a, b, strict=True))


def pointer_hops(data: bytes, off: int) -> int:
    """Compression pointers followed while reading the name at `off` (stops at 1000)."""
    hops = 0
    n = len(data)
    while off < n and hops < 1000:
        length = data[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= n:
                break
            off = ((length & 0x3F) << 8) | data[off + 1]
            hops += 1
            continue
        if length == 0 or length & 0xC0:
            break
        off += 1 + length
    return hops


# -- what the decoder reads -----------------------------------------------------------------------
def record_starts(data: bytes) -> list[int]:
    """Where each record starts, for a message `walk` accepted (then this walk is exact)."""
    _, _, qd, an, ns, ar = HEADER.unpack_from(data)
    off = 12
    for _ in range(qd):
        off = skip_name(data, off) + 4
    starts: list[int] = []
    for _ in range(an + ns + ar):
        starts.append(off)
        off = skip_name(data, off)
        rdlen = struct.unpack_from("!H", data, off + 8)[0]
        off += 10 + rdlen
    return starts


def _owner_and_type(data: bytes, start: int) -> tuple[tuple[bytes, ...], int]:
    buf = codec._Buffer(data)
    buf.offset = start
    labels = tuple(bytes(x).lower() for x in buf.decode_name().label)
    return labels, struct.unpack_from("!H", data, skip_name(data, start))[0]


def decoder_agrees(data: bytes) -> None:
    """Check that the decoder reads each record of a walked message at the walk's offsets.

    The owner and type of every record the decoder (`parse_message`) returns must be the ones
    at the offsets the walk found: anything else means it read from offsets the walk never
    checked (the shape of the fixed bug `rdlength`). A documented error (`DNSError`) or a
    message the walk rejects is not this check's business.
    """
    if len(data) < 12:
        return
    try:
        walk(data)
        msg = parse_message(data)
    except (WireError, DNSError):
        return
    got = [
        (tuple(bytes(x).lower() for x in r.rname.label), int(r.rtype))
        for r in (*msg.rr, *msg.auth, *msg.ar)
    ]
    want = [_owner_and_type(data, start) for start in record_starts(data)]
    check(got == want, f"the decoder read records {got[:4]} where the walk found {want[:4]}")


# -- (a) wire walk and decoder -----------------------------------------------------------------
def wire(data: bytes) -> None:
    """Header policy, walk and decoder on one packet."""
    verdict = header_verdict(data)
    if len(data) < 12:
        check(verdict is Verdict.DROP, "a packet shorter than a header is not dropped")
        return
    for code, keep in ((rc.FORMERR, False), (rc.NOTIMP, True), (rc.SERVFAIL, True)):
        reply = header_only_reply(data, code, keep_opcode=keep)
        check(len(reply) == 12 and reply[:2] == data[:2], "header-only reply malformed")
        check(bool(reply[2] & 0x80) and reply[3] & 0xF == code, "header-only reply flags")
    _, _, qd, an, ns, ar = HEADER.unpack_from(data)
    decoder_agrees(data)
    strict = _dnspython_strict(data)
    try:
        walked = walk(data)
    except WireError:
        if strict is not None and qd <= 1:
            hops = max((pointer_hops(data, off) for off in _name_offsets(data)), default=0)
            check(
                hops > MAX_POINTER_HOPS, "dnspython accepts the message strictly, walk rejects it"
            )
        return
    if qd:
        check(12 < walked.question_end <= len(data), "walk: question end outside the packet")
    try:
        msg = parse_message(data)
    except DNSError:
        return
    counts = (len(msg.questions), len(msg.rr), len(msg.auth), len(msg.ar))
    check(counts == (qd, an, ns, ar), f"decoder section counts {counts} != header")
    for q in msg.questions:
        _check_labels(tuple(bytes(x) for x in q.qname.label))
    for section in (msg.rr, msg.auth, msg.ar):
        for rr in section:
            _check_labels(tuple(bytes(x) for x in rr.rname.label))
    if qd == 1 and verdict is Verdict.ACCEPT:
        req = Request(msg, data, proto="udp", remote=REMOTE, local=LOCAL)
        check(req.name == req.qname.lower() and req.name.endswith("."), "request name form")
        check(isinstance(req.qtype, int) and isinstance(req.qclass, int), "request question")
        if req.edns is not None:
            check(0 <= req.edns.udp_size <= 0xFFFF, "EDNS size out of range")
    if strict is not None and qd == 1:
        check(
            _question_labels(msg) == _dp_labels(strict.question[0].name),
            "dnspython and the decoder read different question names",
        )
        check(
            int(msg.q.qtype) == int(strict.question[0].rdtype),
            "dnspython and the decoder read different question types",
        )


def _dnspython_strict(data: bytes) -> dns.message.Message | None:
    """Dnspython's strict parse of a one-question message without TSIG, else None.

    None also when dnspython rejects it: then only our own properties apply.
    """
    if len(data) < 12:
        return None
    try:
        msg = dns.message.from_wire(data, question_only=False, one_rr_per_rrset=True)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return None
    except Exception:
        return None  # dnspython's own robustness is not under test
    if msg.tsig is not None or len(msg.question) != 1:
        return None
    return msg


def _name_offsets(data: bytes) -> list[int]:
    """Offsets of the question name and of every record owner reachable by a lenient walk."""
    offsets = [12]
    off = 12
    n = len(data)
    _, _, qd, an, ns, ar = HEADER.unpack_from(data)
    try:
        for _ in range(qd):
            off = _lenient_skip(data, off) + 4
            offsets.append(off)
        for _ in range(an + ns + ar):
            off = _lenient_skip(data, off)
            if off + 10 > n:
                break
            rdlen = struct.unpack_from("!H", data, off + 8)[0]
            off += 10 + rdlen
            offsets.append(off)
    except IndexError:
        pass
    return [o for o in offsets if o < n]


def _lenient_skip(data: bytes, off: int) -> int:
    while True:
        length = data[off]
        if length & 0xC0 == 0xC0:
            return off + 2
        if length == 0:
            return off + 1
        off += 1 + length


def _check_labels(labels: tuple[bytes, ...]) -> None:
    check(all(0 < len(label) <= 63 for label in labels), "a decoded label is empty or over 63")
    check(1 + sum(len(label) + 1 for label in labels) <= 255, "a decoded name is over 255")


# -- (b) name codec ----------------------------------------------------------------------------
def names(data: bytes) -> None:
    """The bytes are a name at offset 12 of a query (pointers may reach into the header)."""
    pkt = header() + data[:512] + b"\x00\x01\x00\x01"
    try:
        end = skip_name(pkt, 12)
    except WireError:
        end = -1
    try:
        parser = dns.wire.Parser(pkt, 12)
        theirs: tuple[bytes, ...] | None = _dp_labels(parser.get_name())
    except dns.exception.DNSException:
        theirs = None
    if theirs is not None:
        check(end >= 0, "dnspython reads the name, skip_name rejects it")
    if end < 0:
        return
    buf = codec._Buffer(pkt)
    buf.offset = 12
    label = buf.decode_name()
    ours = tuple(bytes(x) for x in label.label)
    check(buf.offset == end, f"decode_name ends at {buf.offset}, skip_name at {end}")
    _check_labels(ours)
    if theirs is not None:
        check(ours == theirs, f"decoder {ours!r} != dnspython {theirs!r}")
    plain = b"".join(bytes([len(x)]) + x for x in ours) + b"\x00"
    again = codec._Buffer(header() + plain)
    again.offset = 12
    check(tuple(bytes(x) for x in again.decode_name().label) == ours, "wire round trip")
    check(
        dns.name.from_wire(plain, 0)[0].labels[:-1] == ours,
        "dnspython reads the re-encoded name differently",
    )
    text = name_text(ours)
    check(text.isascii() and text.endswith("."), f"the text form {text!r} is not absolute ASCII")
    count = len(_UNESCAPED_DOT.findall(text)) if ours else 0
    check(count == len(ours), f"the text form {text!r} has {count} labels, the name {len(ours)}")
    try:
        reread = text_labels(text)
    except ValueError as exc:
        raise Violation(f"the text form {text!r} does not read back: {exc}") from exc
    check(reread == ours, f"the text form {text!r} reads back as {reread!r}, not {ours!r}")


_UNESCAPED_DOT: Final = re.compile(r"(?<!\\)(?:\\\\)*\.")
"""A dot that ends a label: preceded by an even number of backslashes."""


# -- a configuration served in process -----------------------------------------------------------
def _config(corefile: str) -> Config:
    process = ProcessContext(metrics=Metrics(), http=HTTPRegistry(), generations=Generations())
    return build(parse(corefile, "Corefile", DIRECTIVES), specs=SETUP, dns_port=53, process=process)


def _handlers(head: Handler | None) -> Iterator[Handler]:
    while head is not None:
        yield head
        head = getattr(head, "next", None)


class Served:
    """A configuration set up and started in process, answering through one `Responder`.

    Start-up hooks run (the kubernetes watch reads the reference cluster and syncs); with
    `stop_hooks`, shutdown hooks run right after, so no watch thread runs beside the fuzzer
    while the store keeps its state.
    """

    def __init__(self, corefile: str, *, stop_hooks: bool = True) -> None:
        logging.getLogger("clusterdns").setLevel(logging.CRITICAL)
        self.loop = asyncio.new_event_loop()
        self.config = _config(corefile)
        process = self.config.process
        self.loop.run_until_complete(self._run(process.startup))
        if stop_hooks:
            self.loop.run_until_complete(self._run(list(reversed(process.shutdown))))
        zones = next(iter(self.config.listeners.values()))
        self.block: Block = self.config.blocks[0]
        self.metrics = process.metrics
        self.responder = Responder(
            mux=Mux(zones),
            fastpath=FastPath(process.generations),
            metrics=process.metrics,
            server="dns://:53",
        )

    @staticmethod
    async def _run(hooks: Sequence[Callable[[], object]]) -> None:
        for hook in hooks:
            result = hook()
            if asyncio.iscoroutine(result):
                await result

    def handlers(self) -> Iterator[Handler]:
        """The block's plugins, outermost first."""
        return _handlers(self.block.head)

    def ask(self, data: bytes, proto: str) -> list[bytes]:
        """Hand one query to the responder and run the loop until its work is done."""
        return self.loop.run_until_complete(self._ask(data, proto))

    async def _ask(self, data: bytes, proto: str) -> list[bytes]:
        sent: list[bytes] = []
        r = self.responder
        if proto == "udp":
            r.datagram(data, REMOTE, LOCAL, sent.append)
        else:
            r.submit(data, "tcp", REMOTE, LOCAL, sent.append)
        if r.tasks:
            done, pending = await asyncio.wait(set(r.tasks), timeout=STEP_TIMEOUT_S)
            check(not pending, f"a query was still in flight after {STEP_TIMEOUT_S} s")
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
        return sent

    @property
    def panics(self) -> float:
        """Exceptions the responder recovered from (each one a handler crash)."""
        return self.metrics.panics.get()


def kubeadm_corefile(*, upstream: str = "    whoami\n") -> str:
    """The kubeadm Corefile (spec §0.3, new cache form) for in-process use.

    The side listeners (`health`, `ready`, `prometheus` are set up but never started), `loop`
    and `reload` stay out (they need a bound listener and a reloader); `forward` is replaced by
    `upstream` (default `whoami`, which answers every name, deterministically per client).
    """
    return (
        ".:53 {\n"
        "    errors\n"
        "    health 127.0.0.1:0\n"
        "    ready 127.0.0.1:0\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        f"        from_yaml {REFERENCE_YAML}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 30\n"
        "    }\n"
        "    prometheus 127.0.0.1:0\n"
        "    hosts /nonexistent/hosts example.net {\n"
        "        192.0.2.10 db.example.net\n"
        "        2001:db8::10 db.example.net\n"
        "        fallthrough\n"
        "    }\n"
        "    template IN A example.org {\n"
        '        answer "{{ .Name }} 60 IN A 192.0.2.20"\n'
        "    }\n"
        "    template IN ANY nx.example.org {\n"
        "        rcode NXDOMAIN\n"
        "    }\n"
        f"{upstream}"
        "    cache 30 {\n"
        "        disable success cluster.local\n"
        "        disable denial cluster.local\n"
        "    }\n"
        "    loadbalance\n"
        "}\n"
    )


# -- reply properties --------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """What the server made of a query, as far as a reply check needs it."""

    data: bytes
    proto: str
    msg: DNSRecord | None
    """The decoded query when the walk and decoder accepted it."""

    @classmethod
    def of(cls, data: bytes, proto: str) -> Query:
        seen = data[:UDP_QUERY_BUFFER] if proto == "udp" else data
        msg: DNSRecord | None = None
        if header_verdict(seen) is Verdict.ACCEPT and len(seen) > 12:
            try:
                walk(seen)
                msg = parse_message(seen)
            except (WireError, DNSError):
                msg = None
        return cls(seen, proto, msg)

    @property
    def limit(self) -> int:
        """The largest reply the client accepts."""
        if self.proto == "tcp":
            return MAX_TCP
        edns = edns_of(self.msg) if self.msg is not None else None
        return 512 if edns is None else min(MAX_UDP_REPLY, max(512, edns.udp_size))


def check_replies(q: Query, replies: list[bytes], *, relayed: bool = False) -> None:
    """The reply properties every query has, whatever the chain.

    `relayed`: the answer comes from an upstream, whose records are relayed as they are.
    """
    verdict = header_verdict(q.data)
    if verdict is Verdict.DROP:
        check(not replies, "a packet the policy drops was answered")
        return
    check(len(replies) == 1, f"{len(replies)} replies to one query")
    reply = replies[0]
    check(len(reply) >= 12, "reply shorter than a header")
    check(reply[:2] == q.data[:2], "reply ID differs from the query ID")
    qflags, rflags = struct.unpack_from("!H", q.data, 2)[0], struct.unpack_from("!H", reply, 2)[0]
    check(bool(rflags & 0x8000), "QR not set in the reply")
    if not relayed:  # forward relays the upstream's header bits, as CoreDNS does
        check(not rflags & 0x0040, "Z set in the reply")
        check(rflags & 0x0100 == qflags & 0x0100, "RD not copied")
    check(len(reply) <= q.limit, f"reply of {len(reply)} bytes over the client's {q.limit}")
    opcode = (rflags >> 11) & 0xF
    if relayed and opcode != (qflags >> 11) & 0xF:
        # forward relays the upstream's opcode, as CoreDNS does (its reply check ignores it);
        # dnspython reads such a message by that opcode's rules, so only the walk applies here.
        try:
            walk(reply)
            parse_message(reply)
        except (WireError, DNSError) as exc:
            raise Violation(f"the relayed reply does not decode: {exc!r}") from exc
        return
    try:
        got = dns.message.from_wire(reply, one_rr_per_rrset=True)
    except dns.exception.DNSException as exc:
        if not relayed:
            raise Violation(f"the reply is not a well-formed message: {exc!r}") from exc
        # Relayed records keep the upstream's RDATA as it was (as CoreDNS relays it), and
        # dnspython also judges RDATA semantics (an empty URI target): the wire must decode.
        try:
            walk(reply)
            parse_message(reply)
        except (WireError, DNSError) as inner:
            raise Violation(f"the relayed reply does not decode: {inner!r}") from inner
        return
    code = got.rcode()
    if code in (dns.rcode.FORMERR, dns.rcode.NOTIMP) and q.msg is None:
        return
    if q.msg is None or not q.msg.questions:
        return
    labels = _question_labels(q.msg)
    check(len(got.question) == 1, "the question is not echoed")
    echoed = got.question[0]
    check(_dp_labels(echoed.name) == labels, "the question is not echoed byte for byte")
    check(
        int(echoed.rdtype) == int(q.msg.q.qtype) and int(echoed.rdclass) == int(q.msg.q.qclass),
        "the question type or class changed",
    )
    if got.answer and code == dns.rcode.NOERROR and not relayed:
        owners = [_dp_labels(rrset.name) for rrset in got.answer]
        check(
            any(_same_name(o, labels) for o in owners),
            f"no answer record is owned by the question name ({owners[0]!r} vs {labels!r})",
        )


# -- (c) the request handler -------------------------------------------------------------------
@functools.cache
def _kubeadm() -> Served:
    return Served(kubeadm_corefile())


def responder(data: bytes) -> None:
    """One packet, over UDP and over TCP, through the kubeadm-like chain."""
    served = _kubeadm()
    for proto in ("udp", "tcp"):
        before = served.panics
        replies = served.ask(data, proto)
        q = Query.of(data, proto)
        check(served.panics == before, "a handler raised (the server recovered with SERVFAIL)")
        check_replies(q, replies)


# -- (d) the Corefile --------------------------------------------------------------------------
_UNSAFE: Final = ("/dev/", "/proc/", "/sys/")


@functools.cache
def _empty_dir() -> str:
    return tempfile.mkdtemp(prefix="clusterdns-fuzz-corefile-")


def corefile(data: bytes) -> None:
    """Corefile text through the parser and every setup, as `-validate` does."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the command line refuses a Corefile that is not UTF-8 before parsing
    if any(s in text for s in _UNSAFE) or (
        "import" in text and any(s in text for s in ("/", "\\", ".."))
    ):
        return  # keep `import` inside an empty folder; never read devices
    lines = text.count("\n") + 1
    try:
        blocks = parse(text, "Corefile", DIRECTIVES, base_dir=_empty_dir())
    except CorefileError as exc:
        check(exc.file == "Corefile" and 0 <= exc.line <= lines + 1, f"error location: {exc}")
        return
    for block in blocks:
        check(bool(block.keys), "a server block without keys")
        for top in block.directives:
            for d in top.walk():
                if d.file == "Corefile":
                    check(1 <= d.line <= lines, f"directive {d.name} at line {d.line} of {lines}")
    process = ProcessContext(
        metrics=Metrics(), http=HTTPRegistry(), generations=Generations(), validate_only=True
    )
    try:
        build(blocks, specs=SETUP, dns_port=53, process=process)
    except CorefileErrors as exc:
        for err in exc.errors:
            check(err.file == "Corefile", f"setup error without the file: {err}")
    except CorefileError as exc:
        check(exc.file == "Corefile", f"setup error without the file: {exc}")
    except ClusterDNSError:
        pass


# -- (e) fast path against the full chain ------------------------------------------------------
@functools.cache
def _kubeadm_fastpath() -> Served:
    served = Served(kubeadm_corefile())
    served.block.fastpath = True  # as tests/perf/rig.py: the switch overrides replay safety
    return served


def _with_id(data: bytes, qid: int) -> bytes:
    return qid.to_bytes(2, "big") + data[2:]


@contextlib.contextmanager
def _frozen_clocks(served: Served) -> Iterator[None]:
    """Stop the clocks of the cache and the fast path for the three askings of one check.

    A cached reply's TTL counts down each second, so a full-chain reply asked after a second
    boundary rightly differs from a replay asked before it (about 1 check in 3,000 crossed
    one); with the clocks stopped the three askings happen at the same moment.
    """
    now = time.monotonic()
    caches = [h for h in served.handlers() if isinstance(h, Cache)]
    saved = [c.clock for c in caches], served.responder.fastpath.clock
    for cache in caches:
        cache.clock = lambda: now
    served.responder.fastpath.clock = lambda: now
    try:
        yield
    finally:
        for cache, clock in zip(caches, saved[0], strict=True):
            cache.clock = clock
        served.responder.fastpath.clock = saved[1]


def fastpath(data: bytes) -> None:
    """Ask twice with the fast path on, once with it off: a replay equals the full chain."""
    if len(data) < 12:
        return
    served = _kubeadm_fastpath()
    with _frozen_clocks(served):
        _fastpath_check(served, data)


def _fastpath_check(served: Served, data: bytes) -> None:
    r = served.responder
    hits = served.metrics.fastpath_hits
    for proto in ("udp", "tcp"):
        r.fastpath.clear()
        served.block.fastpath = True
        first = served.ask(_with_id(data, 1), proto)
        before = hits.get()
        second = served.ask(_with_id(data, 2), proto)
        replayed = hits.get() > before
        served.block.fastpath = False
        r.fastpath.clear()
        try:
            full = served.ask(_with_id(data, 3), proto)
        finally:
            served.block.fastpath = True
        check(len(first) == len(second) == len(full), "the three askings got different counts")
        if replayed:
            check(second[0][:2] == b"\x00\x02", "the replay did not splice the ID")
            for got, what in ((second[0], "the replay"), (first[0], "the stored reply")):
                check(same_reply(got, full[0]), f"{proto}: {what} differs from the full chain's")


def shuffled(msg: dns.message.Message) -> bool:
    """Whether `loadbalance` orders this reply by chance (2+ addresses or MX in a section)."""
    addresses = (dns.rdatatype.A, dns.rdatatype.AAAA)
    for section in (msg.answer, msg.authority, msg.additional):
        if sum(len(rrset) for rrset in section if rrset.rdtype in addresses) > 1:
            return True
        if sum(len(rrset) for rrset in section if rrset.rdtype == dns.rdatatype.MX) > 1:
            return True
    return False


def same_reply(got: bytes, want: bytes) -> bool:
    """Whether two replies are the same: byte for byte after the ID.

    For replies `loadbalance` shuffles: the same records in any order, and the same length.
    """
    if got[2:] == want[2:]:
        return True
    try:
        a = dns.message.from_wire(got, one_rr_per_rrset=True)
        b = dns.message.from_wire(want, one_rr_per_rrset=True)
    except dns.exception.DNSException:
        return False
    if not shuffled(b) or len(got) != len(want) or got[2:12] != want[2:12]:
        return False

    def records(m: dns.message.Message) -> list[list[str]]:
        return [sorted(r.to_text() for r in s) for s in (m.answer, m.authority, m.additional)]

    return a.question == b.question and records(a) == records(b)


# -- (f) a hostile upstream --------------------------------------------------------------------
CLIENT_TYPES: Final = ("A", "AAAA", "MX", "TXT", "SRV", "PTR", "CNAME", "NS")
CLIENT_NAME: Final = "Db.Example.com."
"""The name the upstream target's client asks (its question sits at offset 12 of every reply)."""


class Upstream:
    """`cache 30` in front of `forward`, whose one upstream answers with the fuzzer's bytes."""

    def __init__(self) -> None:
        self.served = Served(
            ".:53 {\n"
            "    errors\n"
            "    cache 30\n"
            "    forward . 127.0.0.1:9 {\n"
            "        max_fails 0\n"
            "    }\n"
            "}\n"
        )
        self.reply = b""
        self.repacks = True
        """Whether the upstream reply of this input packs again (else the client gets SERVFAIL)."""
        handlers = list(self.served.handlers())
        self.cache = next(h for h in handlers if isinstance(h, Cache))
        forward = next(h for h in handlers if isinstance(h, Forward))
        for proxy in forward.proxies:
            proxy.exchange = self.exchange  # type: ignore[method-assign]

    async def exchange(self, query: UpstreamQuery, proto: str, timeout_s: float) -> DNSRecord:
        """The upstream's reply: the fuzzer's header and sections around the query's question."""
        qid = 0x4242
        wire = query.with_id(qid)
        end = skip_name(wire, 12) + 4
        head = bytearray(self.reply[:12].ljust(12, b"\x00"))
        head[0:2] = qid.to_bytes(2, "big")
        head[2] |= 0x80
        head[4:6] = b"\x00\x01"
        data = bytes(head) + wire[12:end] + self.reply[12:]
        result = check_reply(data, qid, query.question)
        if isinstance(result, str):
            raise ExchangeError(f"reply discarded: {result}")
        try:
            bytes(result.pack())
        except Exception:  # the client's writer runs into it too: the client gets SERVFAIL
            self.repacks = False
        return result

    def __call__(self, data: bytes) -> None:
        if len(data) < 13:
            return
        selector, self.reply = data[0], data[1:]
        proto = "tcp" if selector & 1 else "udp"
        q = DNSRecord.question(CLIENT_NAME, CLIENT_TYPES[(selector >> 3) % len(CLIENT_TYPES)])
        if selector & 2:
            from dnslib import EDNS0

            q.add_ar(EDNS0(udp_len=1232, flags="do" if selector & 4 else ""))
        query = bytes(q.pack())
        self.cache.success.clear()
        self.cache.denial.clear()
        served = self.served
        hits = self.cache.metrics.hits
        self.repacks = True
        for qid in (0x0101, 0x0202):
            before, hits_before = served.panics, sum(hits.values.values())
            data = qid.to_bytes(2, "big") + query[2:]
            sent = served.ask(data, proto)
            check(served.panics == before, "a handler raised (the server recovered with SERVFAIL)")
            check_replies(Query.of(data, proto), sent, relayed=True)
            if not self.repacks:
                code = sent[0][3] & 0xF
                check(code == rc.SERVFAIL, f"a reply that does not pack again was sent as {code}")
            if sum(hits.values.values()) > hits_before:
                got = parse_message(sent[0])  # relayed RDATA may not please dnspython
                ttls = [int(r.ttl) for r in (*got.rr, *got.auth, *got.ar) if r.rtype != 41]
                check(all(t <= 30 for t in ttls), f"a cache hit carries TTLs {ttls} over 30")


@functools.cache
def _upstream() -> Upstream:
    return Upstream()


def upstream(data: bytes) -> None:
    """First byte: transport, EDNS, DO and query type; the rest: the upstream's reply."""
    _upstream()(data)


# -- registry ----------------------------------------------------------------------------------
TARGETS: Final[dict[str, Harness]] = {
    "wire": wire,
    "names": names,
    "responder": responder,
    "corefile": corefile,
    "fastpath": fastpath,
    "upstream": upstream,
}


PREPARE: Final[dict[str, Callable[[], object]]] = {
    "responder": _kubeadm,
    "fastpath": _kubeadm_fastpath,
    "upstream": _upstream,
}
"""Targets with a served configuration: building it takes a second, done before fuzzing."""


def prepare(target: str) -> None:
    """Build what `target` serves from (idempotent)."""
    make = PREPARE.get(target)
    if make is not None:
        make()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence clusterdns's loggers (a fuzzing run would print millions of lines)."""
    logger = logging.getLogger("clusterdns")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def qtype_names() -> list[str]:
    """Every query type mnemonic dnslib knows (for the seeds)."""
    return [str(v) for v in QTYPE.forward.values()]
