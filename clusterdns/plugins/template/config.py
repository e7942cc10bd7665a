"""Parse every `template` line of a server block into one frozen TemplateConfig.

Each line is one rule; the rules keep the order written (spec §5.3). Regexes are compiled and
templates parsed here, so every mistake is reported at setup with file and line. Nothing here
runs per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.fallthrough import NEVER, Fallthrough, parse_fallthrough
from clusterdns.dnsutil.zones import KeyError_, zones_from_arg
from clusterdns.plugins.template.expansion import TemplateSyntaxError, TextTemplate, parse_template
from clusterdns.plugins.template.regex import Regex, RegexError, compile_re2
from clusterdns.plugins.template.zonefile import CLASSES, TYPES

ANY: Final = 255
"""Class and type number that matches every class or type."""
MAX_REGEX_LEN: Final = 10000
"""Longest `match` pattern accepted (CoreDNS's limit against huge regex compilations)."""
SECTIONS: Final = ("answer", "additional", "authority")
MATCH_ALL: Final = compile_re2(".*")
NOT_SUPPORTED: Final = ("var", "expr")
RCODES: Final = {**rc.RCODES_BY_NAME, "NOTIMPL": rc.NOTIMP, "BADSIG": 16}
"""Rcode mnemonics as miekg/dns spells them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedError:
    """An `ederror` option: the Extended DNS Error (RFC 8914) to attach to the reply."""

    code: int
    """INFO-CODE, 0-65535."""
    reason: str = ""
    """EXTRA-TEXT, empty when not given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One `template CLASS TYPE [ZONES...] { ... }` line."""

    qclass: int
    """Class number to match; 255 (ANY) matches every class."""
    qtype: int
    """Type number to match; 255 (ANY) matches every type."""
    class_name: str
    """CLASS as written (what `.Class` shows for a query of class ANY)."""
    type_name: str
    """TYPE as written (what `.Type` shows for a query of type ANY)."""
    zones: tuple[str, ...]
    """Zones the rule applies to (default: the server block's zones)."""
    regexes: tuple[Regex, ...] = (MATCH_ALL,)
    """`match` patterns in order; the first that matches wins. Default `.*`."""
    answer: tuple[TextTemplate, ...] = ()
    additional: tuple[TextTemplate, ...] = ()
    authority: tuple[TextTemplate, ...] = ()
    rcode: int = rc.NOERROR
    """Reply rcode; SERVFAIL means fail without writing."""
    ederror: ExtendedError | None = None
    fall: Fallthrough = field(default=NEVER)
    """Zones in which an unmatched name goes to the next rule or plugin instead of SERVFAIL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateConfig:
    """All `template` lines of one server block, in the order written."""

    rules: tuple[Rule, ...]

    @property
    def zones(self) -> tuple[str, ...]:
        """Every zone of every rule, without duplicates (the handler's zones)."""
        return tuple(dict.fromkeys(z for r in self.rules for z in r.zones))


def parse(lines: Sequence[Directive], block_zones: Sequence[str]) -> TemplateConfig:
    """Parse the block's `template` lines.

    Raises:
        CorefileError: any invalid argument or option, naming its file and line.
    """
    return TemplateConfig(rules=tuple(parse_rule(d, block_zones) for d in lines))


def parse_rule(d: Directive, block_zones: Sequence[str]) -> Rule:
    """Parse one `template` line and its block."""
    args = d.expect_args(2, -1)
    class_name, type_name = args[0], args[1]
    qclass = CLASSES.get(class_name)
    if qclass is None:
        raise d.arg_error(0, f"invalid query class {class_name}")
    qtype = TYPES.get(type_name)
    if qtype is None:
        raise d.arg_error(1, f"invalid query type {type_name}")
    zones: list[str] = []
    for i, text in enumerate(args[2:], start=2):
        try:
            zones.extend(zones_from_arg(text))
        except KeyError_ as exc:
            raise d.arg_error(i, str(exc)) from exc
    regexes: list[Regex] = []
    sections: dict[str, list[TextTemplate]] = {s: [] for s in SECTIONS}
    rcode = rc.NOERROR
    ederror: ExtendedError | None = None
    fall = NEVER
    for opt in d.options:
        opt.expect_no_block()
        name = opt.name
        if name == "match":
            for i, pattern in enumerate(opt.expect_args(1, -1)):
                regexes.append(_regex(opt, i, pattern))
        elif name in SECTIONS:
            for i, text in enumerate(opt.expect_args(1, -1)):
                sections[name].append(_template(opt, i, text))
        elif name == "rcode":
            code = opt.expect_args(1)[0]
            if code not in RCODES:
                raise opt.arg_error(0, f"unknown rcode {code}")
            rcode = RCODES[code]
            if rcode > 15:
                raise opt.arg_error(0, f"rcode {code} needs EDNS and is not supported")
        elif name == "ederror":
            values = opt.expect_args(1, 2)
            if not values[0].isdigit() or int(values[0]) > 0xFFFF:
                raise opt.arg_error(0, f"error parsing extended DNS error code {values[0]}")
            ederror = ExtendedError(
                code=int(values[0]), reason=values[1] if len(values) > 1 else ""
            )
        elif name == "fallthrough":
            try:
                fall = parse_fallthrough(opt.values)
            except ValueError as exc:
                raise opt.error(f"fallthrough: {exc}") from exc
        elif name == "upstream":
            pass  # obsolete; accepted with any arguments and ignored, as CoreDNS does
        elif name in NOT_SUPPORTED:
            raise opt.error(f"{name} is not supported by clusterdns")
        else:
            raise opt.error(f"unknown property {name!r}")
    return Rule(
        qclass=qclass,
        qtype=qtype,
        class_name=class_name,
        type_name=type_name,
        zones=tuple(dict.fromkeys(zones)) if zones else tuple(block_zones),
        regexes=tuple(regexes) or (MATCH_ALL,),
        answer=tuple(sections["answer"]),
        additional=tuple(sections["additional"]),
        authority=tuple(sections["authority"]),
        rcode=rcode,
        ederror=ederror,
        fall=fall,
    )


def _regex(opt: Directive, index: int, pattern: str) -> Regex:
    if len(pattern) > MAX_REGEX_LEN:
        raise opt.arg_error(index, f"regex pattern too long: {len(pattern)} > {MAX_REGEX_LEN}")
    try:
        return compile_re2(pattern)
    except RegexError as exc:
        raise opt.arg_error(index, f"could not parse regex: {pattern}, {exc}") from exc


def _template(opt: Directive, index: int, text: str) -> TextTemplate:
    try:
        return parse_template(text)
    except TemplateSyntaxError as exc:
        raise opt.arg_error(
            index, f"{opt.name}: could not compile template {text!r}: {exc}"
        ) from exc
