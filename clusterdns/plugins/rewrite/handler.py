r"""The `rewrite` handler: run the rules, pass a rewritten copy of the query on, revert the reply.

The client's message is never changed: when a rule changes the question or the EDNS options, the
later plugins (cache, kubernetes, forward) get a new Request built from a new message. The reply
goes back through `Reverter`, which writes a new message: the client's question restored and the
response rules applied in reverse rule order to every record of every section. Exception (spec
§23 Q30, copied from CoreDNS): when only `continue` rules matched and none asked for a reply
change, the reply is passed on as the later plugins wrote it, with the rewritten question.

Names are the chain's escaped text (`Request.qname`, `chain.request.name_text`) on both sides:
rules match the question's text and reply names are read into the same form, and text goes
back to wire labels through `chain.request.text_labels`, so a label holding a dot, a backslash
or odd bytes round-trips (`a\.b.example.org.` stays one label `a.b`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from dnslib import CNAME, MX, NAPTR, RR, SOA, SRV, DNSQuestion, DNSRecord, EDNSOption
from dnslib.buffer import BufferError
from dnslib.dns import RD
from dnslib.label import DNSBuffer, DNSLabel, DNSLabelError

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import MAX_NAME, Edns, Request, name_text, text_labels
from clusterdns.chain.writer import ResponseWriter, WriterWrapper, copy_header, full_rcode
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import valid_domain
from clusterdns.errors import PluginError
from clusterdns.plugins.rewrite.rules import (
    Mode,
    OptionRule,
    Query,
    Record,
    ReplyState,
    ResponseKind,
    ResponseRule,
    Rule,
    SubnetRule,
    Variable,
)

NAME: Final = "rewrite"
DNAME: Final = 39
NAPTR_TYPE: Final = 35
DEFAULT_EDNS_SIZE: Final = 4096
"""UDP size of the OPT record an `edns0` rule adds to a query that had none (as CoreDNS)."""
NO_EDNS_SIZE: Final = 512
CLIENT_VARIABLES: Final = frozenset(
    {
        Variable.CLIENT_IP,
        Variable.CLIENT_PORT,
        Variable.SERVER_IP,
        Variable.SERVER_PORT,
        Variable.PROTOCOL,
    }
)
"""`edns0 local` data that differs between clients sending the same query bytes."""


# -- record data names -----------------------------------------------------------------------


def wire_label(name: str) -> DNSLabel | None:
    r"""The wire labels of an absolute name in escaped text, or None when it is no valid name.

    `a\.b.example.org.` is three labels, the first `a.b`; `\DDD` is one byte (as
    `chain.request.text_labels` reads it). Not valid: a relative name, an empty label, a label
    over 63 or a name over 255 octets, a bad escape.
    """
    if not valid_domain(name):
        return None
    if name == ".":
        return DNSLabel(())
    if "\\" not in name and name.isascii():
        # The common case, checked by valid_domain but for the name's length on the wire.
        return DNSLabel(tuple(name[:-1].encode().split(b"."))) if len(name) < MAX_NAME else None
    try:
        return DNSLabel(text_labels(name))
    except ValueError:
        return None


def _name_of_raw(data: bytes) -> str | None:
    try:
        return name_text(DNSBuffer(data).decode_name().label)
    except (BufferError, DNSLabelError, IndexError, ValueError):
        return None


def record_value(rr: RR) -> str | None:
    """The name in a record's data (escaped text), for `answer value` and `answer auto`."""
    rtype = int(rr.rtype)
    rd = rr.rdata
    if rtype in (rc.CNAME, rc.NS, rc.PTR, DNAME) and isinstance(rd, CNAME):
        return name_text(rd.label.label)
    if rtype == DNAME and isinstance(rd, RD):
        return _name_of_raw(bytes(rd.data))
    if rtype == rc.MX and isinstance(rd, MX):
        return name_text(rd.label.label)
    if rtype == rc.SRV and isinstance(rd, SRV):
        return name_text(rd.target.label)
    if rtype == rc.SOA and isinstance(rd, SOA):
        return name_text(rd.mname.label)
    if rtype == NAPTR_TYPE and isinstance(rd, NAPTR):
        return name_text(rd.replacement.label)
    return None


def with_value(rr: RR, value: DNSLabel) -> object:
    """New record data: `rr`'s data with its name replaced by `value`."""
    rd = rr.rdata
    if isinstance(rd, CNAME):
        return type(rd)(value)
    if isinstance(rd, MX):
        return MX(value, rd.preference)
    if isinstance(rd, SRV):
        return SRV(rd.priority, rd.weight, rd.port, value)
    if isinstance(rd, SOA):
        return SOA(value, rd.rname, rd.times)
    if isinstance(rd, NAPTR):
        return NAPTR(rd.order, rd.preference, rd.flags, rd.service, rd.regexp, value)
    buf = DNSBuffer()
    buf.encode_name_nocompress(value)
    return RD(bytes(buf.data))  # DNAME, kept raw: its target is never compressed


# -- the reply ---------------------------------------------------------------------------------


def _opt_record(rclass: int, ttl: int, options: Sequence[tuple[int, bytes]]) -> RR:
    return RR(".", rc.OPT, rclass=rclass, ttl=ttl, rdata=[EDNSOption(c, d) for c, d in options])


def revert_reply(
    msg: DNSRecord, question: DNSQuestion | None, rules: Sequence[ResponseRule]
) -> DNSRecord:
    """A new reply: the client's question restored, `rules` applied in reverse order.

    As CoreDNS, every rule runs for every record of the authority, answer and additional
    sections in turn (rcode and option rules too, once per record; once in all for an rcode rule
    when the reply has no record). Records are rebuilt only where something changed; `msg` and its
    records are left as they are.
    """
    questions = list(msg.questions)
    if question is not None:
        if questions:
            questions[0] = question
        else:
            questions = [question]
    opt = next((rr for rr in msg.ar if rr.rtype == rc.OPT), None)
    state = ReplyState(
        rcode=full_rcode(msg),
        options=[(int(o.code), bytes(o.data)) for o in opt.rdata or ()]
        if opt is not None
        else None,
    )
    original_options = list(state.options) if state.options is not None else None
    ordered = list(reversed(rules))
    sections: list[list[RR]] = []
    records = 0
    for section in (msg.auth, msg.rr, msg.ar):
        out: list[RR] = []
        for rr in section:
            records += 1
            if not ordered:
                out.append(rr)
                continue
            if rr.rtype == rc.OPT:
                for rule in ordered:
                    rule.on_reply(state)
                out.append(rr)
                continue
            value = record_value(rr)
            owner = name_text(rr.rname.label)
            record = Record(owner=owner, ttl=int(rr.ttl), value=value)
            for rule in ordered:
                rule.on_record(record)
                rule.on_reply(state)
            out.append(_rebuilt(rr, record, owner, value))
        sections.append(out)
    if records == 0:
        for rule in ordered:
            if rule.kind is ResponseKind.RCODE:
                rule.on_reply(state)
    authority, answer, additional = sections
    header = copy_header(msg.header)
    header.rcode = state.rcode & 0xF
    extended = state.rcode >> 4
    if opt is not None:
        ttl = (extended << 24) | (int(opt.ttl) & 0xFFFFFF)
        if ttl != int(opt.ttl) or state.options != original_options:
            new_opt = _opt_record(int(opt.rclass), ttl, state.options or [])
            additional = [new_opt if rr is opt else rr for rr in additional]
    elif extended:
        additional = [*additional, _opt_record(NO_EDNS_SIZE, extended << 24, [])]
    return DNSRecord(header, questions=questions, rr=answer, auth=authority, ar=additional)


def _rebuilt(rr: RR, record: Record, owner: str, value: str | None) -> RR:
    """`rr` as the response rules left `record` (`owner` and `value`: its names before).

    Raises:
        PluginError: a rewritten name is not a valid domain name (the client gets SERVFAIL).
    """
    owner_changed = record.owner != owner
    value_changed = record.value is not None and record.value != value
    if not owner_changed and not value_changed and record.ttl == int(rr.ttl):
        return rr
    rdata = rr.rdata
    if value_changed and record.value:
        rdata = with_value(rr, _label_after_rewrite(record.value))
    rname = _label_after_rewrite(record.owner) if owner_changed else rr.rname
    return RR(rname, rr.rtype, rclass=rr.rclass, ttl=record.ttl, rdata=rdata)


def _label_after_rewrite(name: str) -> DNSLabel:
    """`wire_label(name)`; PluginError (SERVFAIL) when a rule left no valid name."""
    label = wire_label(name)
    if label is None:
        raise PluginError(NAME, f"invalid name after rewrite: {name}", bare=True)
    return label


class NoReplay(WriterWrapper):
    """Drops fast-path offers: the query that reached the later plugins depended on the client."""

    def offer_fastpath(self, offer: Offer) -> None:
        """Never replay this reply to another client."""


class Reverter(WriterWrapper):
    """Writes a reverted copy of the reply: the client's question back, response rules applied."""

    def __init__(
        self, inner: ResponseWriter, question: DNSQuestion | None, rules: Sequence[ResponseRule]
    ) -> None:
        super().__init__(inner)
        self.question = question
        self.rules = tuple(rules)

    def write(self, msg: DNSRecord, plugin: str) -> None:
        """Revert a copy of `msg` and pass it on."""
        self.inner.write(revert_reply(msg, self.question, self.rules), plugin)


def client_dependent(rule: Rule) -> bool:
    """Whether a rule puts client data (address, port, transport) into the query."""
    if isinstance(rule, SubnetRule):
        return True
    return isinstance(rule, OptionRule) and rule.variable in CLIENT_VARIABLES


# -- the request -------------------------------------------------------------------------------


def query_of(req: Request) -> Query:
    """The working copy of a request's question and options."""
    return Query(
        name=req.qname,
        qtype=req.qtype,
        qclass=req.qclass,
        options=list(req.edns.options) if req.edns is not None else None,
        remote=req.remote,
        local=req.local,
        proto=req.proto,
    )


def rewritten_request(req: Request, query: Query) -> Request:
    """A new Request carrying the rewritten question and options; `req` is not changed.

    Raises:
        PluginError: the rewritten name is not a valid domain name.
    """
    edns: Edns | None = None
    additional = [rr for rr in req.msg.ar if rr.rtype != rc.OPT]
    if query.options is not None:
        base = req.edns
        edns = Edns(
            version=base.version if base is not None else 0,
            udp_size=base.udp_size if base is not None else DEFAULT_EDNS_SIZE,
            do=base.do if base is not None else False,
            options=tuple(query.options),
        )
        ttl = (edns.version << 16) | (0x8000 if edns.do else 0)
        additional.append(_opt_record(edns.udp_size, ttl, query.options))
    msg = DNSRecord(
        copy_header(req.msg.header),
        questions=[DNSQuestion(_label_after_rewrite(query.name), query.qtype, query.qclass)],
        rr=list(req.msg.rr),
        auth=list(req.msg.auth),
        ar=additional,
    )
    new = Request(
        msg,
        bytes(msg.pack()),
        proto=req.proto,
        remote=req.remote,
        local=req.local,
        server=req.server,
    )
    new.zone = req.zone
    new.edns = edns
    return new


class Rewrite:
    """Apply rewrite rules in order; revert the reply in reverse order."""

    name: ClassVar[str] = NAME

    def __init__(self, rules: Sequence[Rule], nxt: Handler | None) -> None:
        self.rules = tuple(rules)
        self.next = nxt
        self._per_client = frozenset(i for i, r in enumerate(self.rules) if client_dependent(r))

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Rewrite the query, serve it through the next plugins, and revert the reply.

        Raises:
            PluginError: the question name is not a valid domain name after a rule (SERVFAIL,
                error `invalid name after rewrite: NAME`).
        """
        query = query_of(req)
        responses: list[ResponseRule] = []
        stopped = False
        per_client = False
        for index, rule in enumerate(self.rules):
            found = rule.apply(query)
            if found is None:
                continue
            _label_after_rewrite(query.name)
            responses.extend(found)
            per_client = per_client or index in self._per_client
            if rule.mode is Mode.STOP:
                stopped = True
                break
        inner = rewritten_request(req, query) if query.changed else req
        if per_client:
            w = NoReplay(w)
        if stopped or responses:
            question = req.msg.q if req.msg.questions else None
            return await self._serve(inner, Reverter(w, question, responses))
        if inner is req:
            return await next_or_failure(NAME, self.next, req, w)
        return await self._serve(inner, w)

    async def _serve(self, req: Request, w: ResponseWriter) -> int:
        """Serve `req`; a failure the next plugins did not write is written here, through `w`.

        So the reply to a failure also has its question restored and its rcode rewritten (or, on
        the Q30 path, carries the rewritten question), as in CoreDNS.
        """
        try:
            code = await next_or_failure(NAME, self.next, req, w)
        except PluginError as exc:
            if not w.written and exc.rcode in rc.CLIENT_WRITE_ERRORS:
                w.write(req.reply(aa=False, rcode=exc.rcode), "")
            raise
        if not w.written and code in rc.CLIENT_WRITE_ERRORS:
            w.write(req.reply(aa=False, rcode=code), "")
        return w.rcode if w.written else code
