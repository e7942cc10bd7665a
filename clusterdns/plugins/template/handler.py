"""The template handler: match a query against the rules in order and write the templated reply.

Per query: a name outside every rule's zones goes to the next plugin. Otherwise the rules are
tried in the order written: a rule whose zones, class or type do not fit is skipped; a rule whose
regexes all miss passes to the next rule (and after the last, the next plugin) when its
`fallthrough` covers the name, else the query fails with SERVFAIL. The first rule that matches
answers. It never mutates the query and builds each reply afresh; it opens nothing.
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from typing import ClassVar, Final

from dnslib import RR, DNSRecord, EDNSOption

from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import match_zone
from clusterdns.errors import PluginError
from clusterdns.metrics import NAMESPACE, Counter, Metrics
from clusterdns.plugins.template.config import ANY, ExtendedError, Rule, TemplateConfig
from clusterdns.plugins.template.expansion import TemplateData, TemplateExecError, TextTemplate
from clusterdns.plugins.template.zonefile import RRError, parse_rr, type_mnemonic

NAME: Final = "template"

CLASS_NAMES: Final = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
"""What `.Class` shows, as miekg/dns spells classes."""
EDE_OPTION: Final = 15
"""EDNS option code of an Extended DNS Error (RFC 8914)."""
EDE_UDP_SIZE: Final = 4096
"""UDP size advertised by the OPT record `ederror` adds (overridden when the query had EDNS)."""

_LABELS: Final = ("server", "zone", "view", "class", "type")


@dataclass(frozen=True, slots=True)
class TemplateMetrics:
    """The plugin's series (spec §11.3); one set per process registry."""

    matches: Counter
    template_failures: Counter
    rr_failures: Counter


_METRICS: weakref.WeakKeyDictionary[Metrics, TemplateMetrics] = weakref.WeakKeyDictionary()


def metrics_for(metrics: Metrics) -> TemplateMetrics:
    """Return the template series of a registry, registering them on first use."""
    found = _METRICS.get(metrics)
    if found is None:
        found = TemplateMetrics(
            matches=Counter(
                f"{NAMESPACE}_template_matches_total", "Counter of template regex matches.", _LABELS
            ),
            template_failures=Counter(
                f"{NAMESPACE}_template_template_failures_total",
                "Counter of go template failures.",
                (*_LABELS, "section", "template"),
            ),
            rr_failures=Counter(
                f"{NAMESPACE}_template_rr_failures_total",
                "Counter of mis-templated RRs.",
                (*_LABELS, "section", "template"),
            ),
        )
        metrics.register(found.matches, found.template_failures, found.rr_failures)
        _METRICS[metrics] = found
    return found


class Template:
    """Answer queries from templates; all `template` lines of a block share one handler."""

    name: ClassVar[str] = NAME

    def __init__(
        self, config: TemplateConfig, metrics: TemplateMetrics, nxt: Handler | None
    ) -> None:
        self.config = config
        self.zones = config.zones
        self.metrics = metrics
        self.next = nxt

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Answer from the first matching rule, fail, or pass the query on."""
        if not req.msg.questions or match_zone(req.name, self.zones) is None:
            return await next_or_failure(NAME, self.next, req, w)
        for rule in self.config.rules:
            zone = match_zone(req.name, rule.zones)
            if zone is None or not _fits(rule, req):
                continue
            data = _match(rule, req, zone)
            if data is None:
                if rule.fall.through(req.name):
                    continue
                return rc.SERVFAIL
            self.metrics.matches.inc((req.server, data.zone, "", data.class_, data.type_))
            if rule.rcode == rc.SERVFAIL:
                return rc.SERVFAIL
            w.write(self._reply(req, rule, data), NAME)
            return rule.rcode
        return await next_or_failure(NAME, self.next, req, w)

    def _reply(self, req: Request, rule: Rule, data: TemplateData) -> DNSRecord:
        reply = req.reply(aa=True, rcode=rule.rcode)
        for t in rule.answer:
            reply.add_answer(self._record(req, data, "answer", t))
        for t in rule.additional:
            reply.add_ar(self._record(req, data, "additional", t))
        for t in rule.authority:
            reply.add_auth(self._record(req, data, "authority", t))
        if rule.ederror is not None:
            reply.add_ar(_ede_opt(rule.ederror))
        return reply

    def _record(self, req: Request, data: TemplateData, section: str, t: TextTemplate) -> RR:
        """Expand one template into a record, counting and raising on failure."""
        labels = (req.server, data.zone, "", data.class_, data.type_, section, str(t))
        try:
            text = t.execute(data)
        except TemplateExecError as exc:
            self.metrics.template_failures.inc(labels)
            raise PluginError(NAME, f"{section} template {str(t)!r}: {exc}") from exc
        try:
            return parse_rr(text)
        except RRError as exc:
            self.metrics.rr_failures.inc(labels)
            raise PluginError(NAME, f"{section} template {str(t)!r} gave {text!r}: {exc}") from exc


def _fits(rule: Rule, req: Request) -> bool:
    """Whether the query's class and type fit the rule (ANY on either side fits)."""
    if rule.qclass != ANY and req.qclass != ANY and req.qclass != rule.qclass:
        return False
    return rule.qtype == ANY or req.qtype == ANY or req.qtype == rule.qtype


def _match(rule: Rule, req: Request, zone: str) -> TemplateData | None:
    """Try the rule's regexes on the lower-case name; the first that matches gives the data."""
    for regex in rule.regexes:
        found = regex.groups(req.name)
        if found is None:
            continue
        match, group = found
        return TemplateData(
            zone=zone,
            name=req.qname,
            regex=regex.source,
            match=match,
            group=group,
            class_=rule.class_name
            if req.qclass == ANY
            else CLASS_NAMES.get(req.qclass, f"CLASS{req.qclass}"),
            type_=rule.type_name if req.qtype == ANY else type_mnemonic(req.qtype),
            remote=req.remote[0],
        )
    return None


def _ede_opt(ede: ExtendedError) -> RR:
    """An OPT record carrying one Extended DNS Error option (DO set, as CoreDNS sends it)."""
    data = struct.pack("!H", ede.code) + ede.reason.encode()
    return RR(".", rc.OPT, rclass=EDE_UDP_SIZE, ttl=0x8000, rdata=[EDNSOption(EDE_OPTION, data)])
