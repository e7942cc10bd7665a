"""Rewrite rules: what each changes in the query, and the reply changes it asks for.

A request rule looks at a `Query` (the working copy of the question and EDNS options, never the
client's message) and either ignores it (returns None) or changes it and returns the response
rules that undo or adjust the reply. Response rules work on a `Record` (owner name, TTL, the name
in the record data) and on the `ReplyState` (rcode, EDNS options); the reply writer applies them.
This module builds no messages and knows nothing about Corefiles.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar, Protocol

from clusterdns.dnsutil.names import escaped_at
from clusterdns.plugins.rewrite.regex import expand, rewrite_string

NSID_CODE = 3
SUBNET_CODE = 8


class Mode(enum.Enum):
    """What happens after a rule matched."""

    STOP = "stop"
    """No further rule is tried (the default)."""
    CONTINUE = "continue"
    """The next rules are tried too."""


class Match(enum.Enum):
    """How a rule's name is compared with the (lower-cased) question name."""

    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    SUBSTRING = "substring"
    REGEX = "regex"


class Action(enum.Enum):
    """What an `edns0` rule does with its option."""

    SET = "set"
    """Replace the option if present, else add it."""
    APPEND = "append"
    """Add the option."""
    REPLACE = "replace"
    """Replace the option only if present."""
    UNSET = "unset"
    """Remove the option."""


# -- the working state -------------------------------------------------------------------------


@dataclass(slots=True)
class Query:
    """The question and EDNS options as the rules so far have left them."""

    name: str
    qtype: int
    qclass: int
    options: list[tuple[int, bytes]] | None
    """EDNS options in order; None while the query carries no OPT record."""
    remote: tuple[str, int]
    local: tuple[str, int]
    proto: str
    changed: bool = False
    """Whether anything differs from the client's query (then a new request is built)."""

    @property
    def lname(self) -> str:
        """The question name lower-cased: what rules match against."""
        return self.name.lower()

    def edns_options(self) -> list[tuple[int, bytes]]:
        """The option list, adding an OPT record to the query if it had none (as CoreDNS)."""
        if self.options is None:
            self.options = []
        self.changed = True
        return self.options


@dataclass(slots=True)
class Record:
    """The rewritable parts of one reply record."""

    owner: str
    ttl: int
    value: str | None
    """The name in the data of CNAME, DNAME, SOA (MNAME), SRV, MX, NAPTR, NS and PTR records."""


@dataclass(slots=True)
class ReplyState:
    """The message-level parts of a reply being rewritten."""

    rcode: int
    options: list[tuple[int, bytes]] | None
    """The options of the reply's own OPT record, None when it has none."""


class ResponseKind(enum.Enum):
    """What a response rule works on."""

    RECORD = "record"
    """Each record's owner, TTL or data name."""
    RCODE = "rcode"
    """The reply's rcode; applied once even to a reply without records."""
    OPTION = "option"
    """The reply's EDNS options."""


class ResponseRule(Protocol):
    """A change to the reply, run for every record (in reverse rule order)."""

    kind: ClassVar[ResponseKind]

    def on_record(self, record: Record) -> None:
        """Change one record (record rules only)."""
        ...

    def on_reply(self, reply: ReplyState) -> None:
        """Change the reply itself (rcode and option rules only)."""
        ...


# -- string rewriters used by name and value response rules ----------------------------------


class StringRewriter(Protocol):
    """Maps one name to another (or returns it unchanged)."""

    def __call__(self, text: str) -> str:
        """Return the rewritten name."""
        ...


@dataclass(frozen=True, slots=True)
class Remap:
    """`answer auto` for exact, prefix, substring and regex rules.

    The rewritten name, and names below it, get the original name back (compared without regard
    to letter case). Names are escaped text (`chain.request.name_text`).
    """

    rewritten: str
    original: str

    def __call__(self, text: str) -> str:
        """Map `text` back if it is the rewritten name or lies below it."""
        low = text.lower()
        target = self.rewritten.lower()
        if low == target:
            return self.original
        cut = len(text) - len(target)
        # Below it only if the dot before it ends a label (`a\.b.x.` is not below `b.x.`).
        if (
            cut > 0
            and text[cut - 1] == "."
            and low[cut:] == target
            and not escaped_at(text, cut - 1)
        ):
            return text[:cut] + self.original
        return text


@dataclass(frozen=True, slots=True)
class SuffixSwap:
    """`answer auto` for suffix rules: a name ending in `suffix` gets `replacement` instead."""

    suffix: str
    replacement: str

    def __call__(self, text: str) -> str:
        """Swap the suffix if `text` ends with it (compared without regard to letter case)."""
        if text.lower().endswith(self.suffix):
            return text[: len(text) - len(self.suffix)] + self.replacement
        return text


@dataclass(frozen=True, slots=True)
class RegexRewrite:
    """`answer name|value FROM TO`: if FROM is found, the whole name becomes TO with its groups."""

    pattern: re.Pattern[str]
    target: str

    def __call__(self, text: str) -> str:
        """Rewrite `text` when the pattern is found in it."""
        return rewrite_string(self.pattern, self.target, text)


@dataclass(frozen=True, slots=True)
class OwnerRewrite:
    """Rewrite owner names."""

    kind: ClassVar[ResponseKind] = ResponseKind.RECORD
    rewrite: StringRewriter

    def on_record(self, record: Record) -> None:
        """Rewrite the record's owner name."""
        record.owner = self.rewrite(record.owner)

    def on_reply(self, reply: ReplyState) -> None:
        """Nothing: a record rule."""


@dataclass(frozen=True, slots=True)
class ValueRewrite:
    """Rewrite the names in record data (CNAME, DNAME, SOA, SRV, MX, NAPTR, NS, PTR)."""

    kind: ClassVar[ResponseKind] = ResponseKind.RECORD
    rewrite: StringRewriter

    def on_record(self, record: Record) -> None:
        """Rewrite the record's data name, if it has one."""
        if record.value:
            record.value = self.rewrite(record.value)

    def on_reply(self, reply: ReplyState) -> None:
        """Nothing: a record rule."""


@dataclass(frozen=True, slots=True)
class TtlClamp:
    """Clamp record TTLs to [low, high]."""

    kind: ClassVar[ResponseKind] = ResponseKind.RECORD
    low: int
    high: int

    def on_record(self, record: Record) -> None:
        """Raise a TTL below `low`, lower one above `high`."""
        if record.ttl < self.low:
            record.ttl = self.low
        elif record.ttl > self.high:
            record.ttl = self.high

    def on_reply(self, reply: ReplyState) -> None:
        """Nothing: a record rule."""


@dataclass(frozen=True, slots=True)
class RcodeSwap:
    """Replace rcode `old` with `new`."""

    kind: ClassVar[ResponseKind] = ResponseKind.RCODE
    old: int
    new: int

    def on_record(self, record: Record) -> None:
        """Nothing: a message rule."""

    def on_reply(self, reply: ReplyState) -> None:
        """Swap the rcode if it is `old`."""
        if reply.rcode == self.old:
            reply.rcode = self.new


@dataclass(frozen=True, slots=True)
class DropOption:
    """`revert` of an option the rule added: remove it from the reply's OPT record."""

    kind: ClassVar[ResponseKind] = ResponseKind.OPTION
    code: int

    def on_record(self, record: Record) -> None:
        """Nothing: a message rule."""

    def on_reply(self, reply: ReplyState) -> None:
        """Remove the first option with this code."""
        if reply.options is None:
            return
        for index, (code, _) in enumerate(reply.options):
            if code == self.code:
                del reply.options[index]
                return


@dataclass(frozen=True, slots=True)
class RestoreOption:
    """`revert` of an option the rule replaced: put the old data back in the reply's OPT record."""

    kind: ClassVar[ResponseKind] = ResponseKind.OPTION
    code: int
    data: bytes

    def on_record(self, record: Record) -> None:
        """Nothing: a message rule."""

    def on_reply(self, reply: ReplyState) -> None:
        """Replace the first option with this code by the old one."""
        if reply.options is None:
            return
        for index, (code, _) in enumerate(reply.options):
            if code == self.code:
                reply.options[index] = (self.code, self.data)
                return


# -- request rules -----------------------------------------------------------------------------


class Rule(Protocol):
    """One rewrite rule."""

    @property
    def mode(self) -> Mode:
        """Whether rule processing stops after this rule matched."""
        ...

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Change `query` if the rule matches; return its response rules, or None if it did not."""
        ...


@dataclass(frozen=True, slots=True)
class NameMatcher:
    """How `ttl` and `rcode` rules (and the request side of `name` rules) select names."""

    match: Match
    text: str
    """The absolute lower-case name (or the pattern text for regex)."""
    pattern: re.Pattern[str] | None = None

    def search(self, name: str) -> bool:
        """Whether lower-case `name` is selected."""
        if self.match is Match.EXACT:
            return name == self.text
        if self.match is Match.PREFIX:
            return name.startswith(self.text)
        if self.match is Match.SUFFIX:
            return name.endswith(self.text)
        if self.match is Match.SUBSTRING:
            return self.text in name
        assert self.pattern is not None
        return self.pattern.search(name) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class NameRule:
    """`name [MATCH] FROM TO [answer ...]`: rewrite the question name."""

    mode: Mode = Mode.STOP
    match: Match = Match.EXACT
    source: str
    """FROM: an absolute lower-case name, or the pattern text for regex."""
    target: str
    """TO: an absolute lower-case name, with `{N}` group references for regex."""
    pattern: re.Pattern[str] | None = None
    auto: bool = False
    """Map the rewritten name back in replies (always on for exact)."""
    answers: tuple[ResponseRule, ...] = ()
    """Fixed response rules: `answer name|value` rules, and the suffix swap of suffix+auto."""

    def rewritten(self, name: str) -> str | None:
        """The new name for lower-case `name`, or None if the rule does not match it."""
        source = self.source
        match self.match:
            case Match.EXACT:
                return self.target if name == source else None
            case Match.PREFIX:
                return self.target + name[len(source) :] if name.startswith(source) else None
            case Match.SUFFIX:
                if not name.endswith(source):
                    return None
                return name[: len(name) - len(source)] + self.target
            case Match.SUBSTRING:
                return name.replace(source, self.target) if source in name else None
            case Match.REGEX:
                assert self.pattern is not None
                found = self.pattern.search(name)
                return None if found is None else expand(self.target, found)

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Rewrite the question name; with `auto`, ask for it to be mapped back in the reply."""
        new = self.rewritten(query.lname)
        if new is None:
            return None
        original = query.name
        query.name = new
        query.changed = True
        if not self.auto:
            return list(self.answers)
        back = Remap(new, original)
        return [OwnerRewrite(back), ValueRewrite(back), *self.answers]


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeRule:
    """`type FROM TO`: change the query type."""

    mode: Mode = Mode.STOP
    source: int
    target: int

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Change the type if it is FROM."""
        if query.qtype != self.source:
            return None
        query.qtype = self.target
        query.changed = True
        return []


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassRule:
    """`class FROM TO`: change the query class."""

    mode: Mode = Mode.STOP
    source: int
    target: int

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Change the class if it is FROM."""
        if query.qclass != self.source:
            return None
        query.qclass = self.target
        query.changed = True
        return []


@dataclass(frozen=True, slots=True, kw_only=True)
class TtlRule:
    """`ttl [MATCH] NAME SECONDS|MIN-MAX`: clamp the TTLs of the reply."""

    mode: Mode = Mode.STOP
    names: NameMatcher
    low: int
    high: int

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Ask for the TTL clamp if the name is selected."""
        if not self.names.search(query.lname):
            return None
        return [TtlClamp(self.low, self.high)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RcodeRule:
    """`rcode [MATCH] NAME FROM TO`: change the reply's rcode."""

    mode: Mode = Mode.STOP
    names: NameMatcher
    old: int
    new: int

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Ask for the rcode swap if the name is selected."""
        if not self.names.search(query.lname):
            return None
        return [RcodeSwap(self.old, self.new)]


class Variable(enum.Enum):
    """Data of an `edns0 local` option computed from the query."""

    QNAME = "{qname}"
    QTYPE = "{qtype}"
    CLIENT_IP = "{client_ip}"
    CLIENT_PORT = "{client_port}"
    PROTOCOL = "{protocol}"
    SERVER_IP = "{server_ip}"
    SERVER_PORT = "{server_port}"


def _ip_bytes(family: int, address: str) -> bytes | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if family == 1:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                return None
            ip = ip.ipv4_mapped
        return ip.packed
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def _family(query: Query) -> int:
    return 2 if ":" in query.remote[0] else 1


def variable_data(variable: Variable, query: Query) -> bytes | None:
    """The option data for a variable, or None when it cannot be computed."""
    match variable:
        case Variable.QNAME:
            return query.name.encode()
        case Variable.QTYPE:
            return query.qtype.to_bytes(2, "big")
        case Variable.CLIENT_IP:
            return _ip_bytes(_family(query), query.remote[0])
        case Variable.SERVER_IP:
            return _ip_bytes(_family(query), query.local[0])
        case Variable.CLIENT_PORT:
            return query.remote[1].to_bytes(2, "big")
        case Variable.SERVER_PORT:
            return query.local[1].to_bytes(2, "big")
        case Variable.PROTOCOL:
            return query.proto.encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionRule:
    """`edns0 local|nsid ACTION ...`: set, add, replace or remove one EDNS0 option."""

    mode: Mode = Mode.STOP
    action: Action
    code: int
    data: bytes = b""
    variable: Variable | None = None
    """Compute the data from the query instead of using `data`."""
    revert: bool = False

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Change the query's options as CoreDNS does (an absent OPT record is added)."""
        data = self.data
        if self.variable is not None:
            computed = variable_data(self.variable, query)
            if computed is None:
                return None
            data = computed
        options = query.edns_options()
        if self.action is Action.UNSET:
            options[:] = [(c, d) for c, d in options if c != self.code]
            return []
        for index, (code, old) in enumerate(options):
            if code != self.code:
                continue
            if self.action in (Action.REPLACE, Action.SET):
                options[index] = (self.code, data)
                return [RestoreOption(self.code, old)] if self.revert else []
            if self.variable is not None:
                return None
        if self.action in (Action.APPEND, Action.SET):
            options.append((self.code, data))
            return [DropOption(self.code)] if self.revert else []
        return None


def client_subnet(query: Query, v4_bits: int, v6_bits: int) -> bytes | None:
    """The EDNS0 client-subnet option data (RFC 7871) for the query's source address."""
    try:
        ip = ipaddress.ip_address(query.remote[0])
    except ValueError:
        return None
    family, bits = (1, v4_bits) if ip.version == 4 else (2, v6_bits)
    net = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    address = net.network_address.packed[: (bits + 7) // 8]
    return family.to_bytes(2, "big") + bytes([bits, 0]) + address


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetRule:
    """`edns0 subnet ACTION V4BITS V6BITS`: the client's subnet as an EDNS0 client-subnet option."""

    mode: Mode = Mode.STOP
    action: Action
    v4_bits: int = 0
    v6_bits: int = 0
    revert: bool = False
    code: ClassVar[int] = SUBNET_CODE

    def apply(self, query: Query) -> list[ResponseRule] | None:
        """Set, add, replace or remove the client-subnet option."""
        options = query.edns_options()
        if self.action is Action.UNSET:
            options[:] = [(c, d) for c, d in options if c != self.code]
            return []
        for index, (code, old) in enumerate(options):
            if code != self.code:
                continue
            if self.action in (Action.REPLACE, Action.SET):
                data = client_subnet(query, self.v4_bits, self.v6_bits)
                if data is not None:
                    options[index] = (self.code, data)
                    return [RestoreOption(self.code, old)] if self.revert else []
            return None
        if self.action in (Action.APPEND, Action.SET):
            data = client_subnet(query, self.v4_bits, self.v6_bits)
            if data is not None:
                options.append((self.code, data))
                return [DropOption(self.code)] if self.revert else []
        return None
