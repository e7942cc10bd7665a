"""The `log` handler: one INFO line per query whose name and reply class a rule selects.

It wraps the rest of the chain: it passes the query on, then reads the outcome from the writer.
When nothing was written and the returned rcode is one the server answers itself (SERVFAIL,
REFUSED, FORMERR, NOTIMP) the line describes that error reply (spec §4.5). A PluginError from
later plugins is logged the same way and re-raised for `errors` and the server; any other
exception is a crash and passes through without a line.

Lines go to the `clusterdns.querylog` logger, whose records the formatter prints without a
`plugin/log: ` prefix, as CoreDNS prints its query log.

A reply replayed by the fast path never reaches this plugin, so the fast-path offer of a reply
that was logged is withheld (the next identical query runs the chain again and is logged too);
the offer of a reply that was not logged (class not selected) is passed on, since its replays
would not be logged either.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar, Final

from dnslib import DNSRecord

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter, WriterWrapper
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import is_subdomain
from clusterdns.dnsutil.response import class_of, classify
from clusterdns.errors import PluginError
from clusterdns.plugins.log.config import NAME, LogConfig, Rule
from clusterdns.plugins.log.format import Entry, LineFormat, compile_format

QUERY_LOGGER: Final = "clusterdns.querylog"
query_log = logging.getLogger(QUERY_LOGGER)


class CompiledRule:
    """A Rule with its format compiled."""

    __slots__ = ("classes", "format", "logs_all", "name")

    def __init__(self, rule: Rule, line_format: LineFormat) -> None:
        self.name = rule.name
        self.classes = rule.classes
        self.logs_all = rule.logs_all
        self.format = line_format


class OfferHolder(WriterWrapper):
    """Passes everything through except the fast-path offer, which it keeps until asked."""

    def __init__(self, inner: ResponseWriter) -> None:
        super().__init__(inner)
        self.held: Offer | None = None

    def offer_fastpath(self, offer: Offer) -> None:
        """Keep the offer; `release` passes it on."""
        self.held = offer

    def release(self) -> None:
        """Pass the kept offer, if any, to the wrapped writer."""
        if self.held is not None:
            self.inner.offer_fastpath(self.held)


class Log:
    """Log queries and the replies they got."""

    name: ClassVar[str] = NAME

    def __init__(self, config: LogConfig, nxt: Handler | None) -> None:
        self.config = config
        self.next = nxt
        formats: dict[str, LineFormat] = {}
        rules: list[CompiledRule] = []
        for rule in config.rules:
            if rule.format not in formats:
                formats[rule.format] = compile_format(rule.format)
            rules.append(CompiledRule(rule, formats[rule.format]))
        self.rules = tuple(rules)

    def match(self, name: str) -> CompiledRule | None:
        """The first rule whose name covers lower-case absolute `name`."""
        for rule in self.rules:
            if is_subdomain(name, rule.name):
                return rule
        return None

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Pass the query on, then log it if the first matching rule selects the reply."""
        rule = self.match(req.name)
        if rule is None:
            return await next_or_failure(NAME, self.next, req, w)
        start_ns = time.perf_counter_ns()
        holder = OfferHolder(w)
        try:
            code = await next_or_failure(NAME, self.next, req, holder)
        except PluginError as exc:
            if not self.record(rule, req, w, exc.rcode, start_ns):
                holder.release()
            raise
        if not self.record(rule, req, w, code, start_ns):
            holder.release()
        return code

    def record(
        self, rule: CompiledRule, req: Request, w: ResponseWriter, code: int, start_ns: int
    ) -> bool:
        """Write the line for one query if the rule's classes select its reply.

        Returns:
            Whether a line was written.
        """
        if not query_log.isEnabledFor(logging.INFO):
            return False
        msg: DNSRecord | None
        if w.written:
            msg, code = w.msg, w.rcode
        elif code in rc.CLIENT_WRITE_ERRORS:
            msg = req.reply(aa=False, rcode=code)
        else:
            msg = None
        if not rule.logs_all and class_of(classify(msg)) not in rule.classes:
            return False
        query_log.info("%s", rule.format.render(Entry(req, msg, code, start_ns)))
        return True
