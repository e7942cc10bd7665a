"""`parse`: the `rewrite` lines of a block -> rules, checked at setup.

Each line is one rule; the block form joins every word inside the braces into that one rule, as
CoreDNS does. Errors carry CoreDNS's wording and name the line of the word at fault (the
directive's line when no single word is). This module builds no messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dnslib import QTYPE

from clusterdns.corefile import Directive, Token
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.names import normalize
from clusterdns.errors import CorefileError
from clusterdns.plugins.rewrite.regex import PatternError, check_groups, compile_pattern
from clusterdns.plugins.rewrite.rules import (
    NSID_CODE,
    Action,
    ClassRule,
    Match,
    Mode,
    NameMatcher,
    NameRule,
    OptionRule,
    OwnerRewrite,
    RcodeRule,
    RegexRewrite,
    ResponseRule,
    Rule,
    SubnetRule,
    SuffixSwap,
    TtlRule,
    TypeRule,
    ValueRewrite,
    Variable,
)

MAX_TTL: Final = 2**32 - 1
MAX_OPEN_TTL: Final = 2147483647
"""The upper bound of an open range (`30-`)."""
MAX_RCODE: Final = 23
CLASSES: Final = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
"""Class mnemonics (miekg/dns StringToClass)."""
_UINT: Final = re.compile(r"[0-9]+")
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")
_OCTAL: Final = re.compile(r"0[0-7]+")
_PREFIXED: Final = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+")
_METADATA_LABEL: Final = re.compile(r"\{[A-Za-z0-9_\-]+/[A-Za-z0-9_\-./]+\}")


@dataclass(frozen=True, slots=True)
class Words:
    """The words of one rule, each with its token (so an error can name its line)."""

    directive: Directive
    tokens: tuple[Token, ...]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> str:
        return self.tokens[index].text

    def rest(self, start: int) -> Words:
        """The words from `start` on."""
        return Words(self.directive, self.tokens[start:])

    @property
    def texts(self) -> list[str]:
        """Every word."""
        return [t.text for t in self.tokens]

    def error(self, message: str, index: int | None = None) -> CorefileError:
        """A CorefileError at word `index` (at the directive when None or out of range)."""
        if index is not None and 0 <= index < len(self.tokens):
            return self.tokens[index].error(message, self.directive.plugin)
        return self.directive.error(message)


def words_of(d: Directive) -> Words:
    """One rule's words: the line's arguments, and with fewer than two, the block's words.

    Raises:
        CorefileError: a block after a rule written out on the line, or a nested block.
    """
    tokens = list(d.args)
    if d.block is not None:
        if len(tokens) >= 2:
            raise d.error("a rule written on the rewrite line cannot also have a block")
        for line in d.options:
            if line.block is not None:
                raise line.error("nested blocks are not allowed in a rewrite rule")
            tokens.append(line.token)
            tokens.extend(line.args)
    return Words(d, tuple(tokens))


def _quoted(text: str) -> str:
    """Go's %q for the plain words a Corefile holds."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_rule(words: Words) -> Rule:
    """Parse one rule: `[continue|stop] FIELD ...`.

    Raises:
        CorefileError: an unknown field, or a field's arguments are invalid.
    """
    if not len(words):
        raise words.error("no rule type specified for rewrite")
    first = words[0].lower()
    mode = Mode.STOP
    start = 1
    if first in (Mode.CONTINUE.value, Mode.STOP.value):
        mode = Mode(first)
        if len(words) < 2:
            raise words.error(f"{first} rule must begin with a rule type")
        field = words[1].lower()
        start = 2
    else:
        field = first
    args = words.rest(start)
    match field:
        case "answer":
            raise words.error("response rewrites must begin with a name rule", start - 1)
        case "name":
            return _name_rule(mode, args)
        case "class" | "type":
            if len(args) != 2:
                raise words.error(f"{field} rules must have exactly two arguments")
            return _class_rule(mode, args) if field == "class" else _type_rule(mode, args)
        case "edns0":
            return _edns0_rule(mode, args)
        case "ttl":
            return _ttl_rule(mode, args)
        case "rcode":
            return _rcode_rule(mode, args)
        case "cname":
            raise words.error("cname rules are not supported by clusterdns", start - 1)
        case _:
            raise words.error(f"invalid rule type {_quoted(words[0])}", 0)


# -- name --------------------------------------------------------------------------------------


def _pattern(args: Words, index: int, target: str | None = None) -> re.Pattern[str]:
    try:
        pattern = compile_pattern(args[index])
        if target is not None:
            check_groups(pattern, target)
    except PatternError as exc:
        raise args.error(str(exc), index) from exc
    return pattern


def _name_rule(mode: Mode, args: Words) -> NameRule:
    if len(args) < 2:
        raise args.error("too few arguments for a name rule")
    if len(args) == 2:
        match_word, source, target = Match.EXACT.value, args[0], args[1]
        offset = 0
    else:
        match_word, source, target = args[0].lower(), args[1], args[2]
        offset = 1
    try:
        match = Match(match_word)
    except ValueError:
        raise args.error(
            "name rule supports only exact, prefix, suffix, substring, and regex name "
            f"matching, received: {match_word}",
            0,
        ) from None
    auto = False
    answers: tuple[ResponseRule, ...] = ()
    if len(args) > 3:
        auto, answers = _answer_rules(match_word, args.rest(3))
    if match is Match.REGEX:
        pattern = _pattern(args, offset, target)
        return NameRule(
            mode=mode,
            match=match,
            source=source,
            target=normalize(target),
            pattern=pattern,
            auto=auto,
            answers=answers,
        )
    from_name, to_name = normalize(source), normalize(target)
    if match is Match.EXACT:
        # CoreDNS compiles TO as a pattern for exact rules too; copy the check.
        try:
            check_groups(compile_pattern(to_name), from_name)
        except PatternError as exc:
            raise args.error(str(exc), offset + 1) from exc
        return NameRule(
            mode=mode,
            match=match,
            source=from_name,
            target=to_name,
            auto=True,
            answers=answers,
        )
    if match is Match.SUFFIX and auto:
        swap = SuffixSwap(to_name, from_name)
        answers = (OwnerRewrite(swap), ValueRewrite(swap), *answers)
        auto = False
    return NameRule(
        mode=mode, match=match, source=from_name, target=to_name, auto=auto, answers=answers
    )


def _answer_rules(match_word: str, args: Words) -> tuple[bool, tuple[ResponseRule, ...]]:
    """Parse `answer auto | answer name FROM TO | answer value FROM TO ...`.

    The `answer` keyword may be left out after the first reply rewrite.
    """
    if len(args) < 2:
        raise args.error(f"invalid arguments for {match_word} rule")
    auto = False
    name_rules = 0
    rules: list[ResponseRule] = []
    i = 0
    last = ""
    while i < len(args):
        if not last and args[i] != "answer":
            raise args.error(
                "exceeded the number of arguments for a non-answer rule argument for "
                f"{match_word} rule",
                i,
            )
        if args[i] == "answer":
            i += 1
        if i >= len(args):
            raise args.error(f"type missing for answer rule for {match_word} rule")
        last = args[i]
        i += 1
        if last == "auto":
            auto = True
            continue
        if last not in ("name", "value"):
            raise args.error(
                f"invalid type {_quoted(last)} for answer rule for {match_word} rule", i - 1
            )
        if len(args) - i < 2:
            raise args.error(f"{last} answer rule for {match_word} rule: 2 arguments required")
        try:
            pattern = compile_pattern(args[i])
            check_groups(pattern, args[i + 1])
        except PatternError as exc:
            raise args.error(f"{last} answer rule for {match_word} rule: {exc}", i) from exc
        rewrite = RegexRewrite(pattern, normalize(args[i + 1]))
        if last == "name":
            rules.append(OwnerRewrite(rewrite))
            name_rules += 1
        else:
            rules.append(ValueRewrite(rewrite))
        i += 2
    if auto and name_rules:
        raise args.error("auto name answer rule cannot be combined with explicit name answer rules")
    return auto, tuple(rules)


# -- type, class -------------------------------------------------------------------------------


def type_number(text: str) -> int | None:
    """A type mnemonic (miekg/dns's table, here dnslib's) as a number, or None."""
    upper = text.upper()
    if upper in rc.TYPES_BY_NAME:
        return rc.TYPES_BY_NAME[upper]
    code = QTYPE.reverse.get(upper)
    return int(code) if isinstance(code, int) else None


def _type_rule(mode: Mode, args: Words) -> TypeRule:
    numbers = []
    for i in (0, 1):
        number = type_number(args[i])
        if number is None:
            raise args.error(f"invalid type {_quoted(args[i].upper())}", i)
        numbers.append(number)
    return TypeRule(mode=mode, source=numbers[0], target=numbers[1])


def _class_rule(mode: Mode, args: Words) -> ClassRule:
    numbers = []
    for i in (0, 1):
        number = CLASSES.get(args[i].upper())
        if number is None:
            raise args.error(f"invalid class {_quoted(args[i].upper())}", i)
        numbers.append(number)
    return ClassRule(mode=mode, source=numbers[0], target=numbers[1])


# -- ttl, rcode --------------------------------------------------------------------------------


def _uint(text: str, limit: int) -> int | None:
    if not _UINT.fullmatch(text):
        return None
    value = int(text)
    return value if value <= limit else None


def parse_ttl(text: str) -> tuple[int, int] | None:
    """`SECONDS`, `MIN-MAX`, `-MAX` or `MIN-` -> (low, high), or None if invalid."""
    parts = text.split("-")
    if len(parts) == 1:
        value = _uint(parts[0], MAX_TTL)
        return None if value is None else (value, value)
    if len(parts) != 2 or parts == ["", ""]:
        return None
    low = 0 if parts[0] == "" else _uint(parts[0], MAX_TTL)
    high = MAX_OPEN_TTL if parts[1] == "" else _uint(parts[1], MAX_TTL)
    if low is None or high is None or low > high:
        return None
    return low, high


def _matcher(field: str, args: Words, match_index: int | None, name_index: int) -> NameMatcher:
    """The names a ttl or rcode rule selects (`[MATCH] NAME`)."""
    name = args[name_index]
    if match_index is None:
        return NameMatcher(Match.EXACT, normalize(name))
    word = args[match_index].lower()
    try:
        match = Match(word)
    except ValueError:
        raise args.error(
            f"{field} rule supports only exact, prefix, suffix, substring, and regex name matching",
            match_index,
        ) from None
    if match is not Match.REGEX:
        return NameMatcher(match, normalize(name))
    if len(name) > 10_000:
        raise args.error(
            f"regex pattern too long in a {field} rule: {len(name)} > 10000", name_index
        )
    try:
        pattern = compile_pattern(name)
    except PatternError:
        raise args.error(f"invalid regex pattern in a {field} rule: {name}", name_index) from None
    return NameMatcher(match, name, pattern)


def _ttl_rule(mode: Mode, args: Words) -> TtlRule:
    if len(args) < 2:
        raise args.error(f"too few ({len(args)}) arguments for a ttl rule")
    if len(args) > 3:
        raise args.error("too many arguments for a ttl rule", 3)
    last = len(args) - 1
    bounds = parse_ttl(args[last])
    if bounds is None:
        raise args.error(f"invalid TTL '{args[last]}' for a ttl rule", last)
    names = _matcher("ttl", args, 0 if len(args) == 3 else None, last - 1)
    return TtlRule(mode=mode, names=names, low=bounds[0], high=bounds[1])


def rcode_number(text: str) -> int | None:
    """An rcode given as a number (0 to 23) or a mnemonic, or None."""
    value = _uint(text, 2**32 - 1)
    if value is not None:
        return value if value <= MAX_RCODE else None
    return rc.RCODES_BY_NAME.get(text.upper())


def _rcode_rule(mode: Mode, args: Words) -> RcodeRule:
    if len(args) < 3:
        raise args.error(f"too few ({len(args)}) arguments for a rcode rule")
    if len(args) > 4:
        raise args.error("too many arguments for a rcode rule", 4)
    last = len(args) - 1
    old = rcode_number(args[last - 1])
    if old is None:
        raise args.error(f"invalid matching RCODE '{args[last - 1]}' for a rcode rule", last - 1)
    new = rcode_number(args[last])
    if new is None:
        raise args.error(f"invalid replacement RCODE '{args[last]}' for a rcode rule", last)
    names = _matcher("rcode", args, 0 if len(args) == 4 else None, last - 2)
    return RcodeRule(mode=mode, names=names, old=old, new=new)


# -- edns0 -------------------------------------------------------------------------------------


def parse_code(text: str) -> int | None:
    """A number as Go's strconv.ParseUint(text, 0, 16) reads it, or None.

    Accepted: `65518`, `0xffee`, `0o17`, `0b101`, `017` (octal); no underscores.
    """
    if _OCTAL.fullmatch(text):
        value = int(text, 8)
    elif _PREFIXED.fullmatch(text) and not (len(text) > 1 and text[0] == "0" and text.isdigit()):
        value = int(text, 0)
    else:
        return None
    return value if value <= 0xFFFF else None


def _option_code(args: Words, index: int) -> int:
    code = parse_code(args[index])
    if code is None:
        raise args.error(f"invalid EDNS0 option code {_quoted(args[index])}", index)
    return code


def _local_data(args: Words, index: int) -> bytes | Variable:
    text = args[index]
    if text.startswith("{") and text.endswith("}"):
        try:
            return Variable(text)
        except ValueError:
            if _METADATA_LABEL.fullmatch(text):
                raise args.error(
                    f"metadata variable {text} is not supported by clusterdns (no metadata plugin)",
                    index,
                ) from None
            raise args.error(f"unsupported variable name {_quoted(text)}", index) from None
    if text.startswith("0x"):
        if not _HEX.fullmatch(text[2:]):
            raise args.error(f"invalid hex data {_quoted(text)}", index)
        return bytes.fromhex(text[2:])
    return text.encode()


def _mask_length(args: Words, index: int, family: str, limit: int) -> int:
    value = parse_code(args[index])
    if value is None:
        raise args.error(f"invalid {family} bit mask length {_quoted(args[index])}", index)
    if value > limit:
        raise args.error(f"invalid {family} bit mask length {value}", index)
    return value


def _edns0_rule(mode: Mode, args: Words) -> OptionRule | SubnetRule:
    if len(args) < 2:
        raise args.error("too few arguments for an EDNS0 rule")
    kind = args[0].lower()
    try:
        action = Action(args[1].lower())
    except ValueError:
        raise args.error(f"invalid action: {_quoted(args[1].lower())}", 1) from None
    if action is Action.UNSET:
        match kind:
            case "local":
                if len(args) != 3:
                    raise args.error("local unset action requires exactly two arguments")
                return OptionRule(mode=mode, action=action, code=_option_code(args, 2))
            case "nsid":
                if len(args) != 2:
                    raise args.error("nsid unset action requires exactly one argument")
                return OptionRule(mode=mode, action=action, code=NSID_CODE)
            case "subnet":
                if len(args) != 2:
                    raise args.error("subnet unset action requires exactly one argument")
                return SubnetRule(mode=mode, action=action)
            case _:
                raise args.error(f"invalid rule type {_quoted(kind)}", 0)
    revert = args[len(args) - 1] == "revert"
    if revert:
        args = Words(args.directive, args.tokens[:-1])
    match kind:
        case "local":
            if len(args) != 4:
                raise args.error("EDNS0 local rules require three or four args")
            code = _option_code(args, 2)
            data = _local_data(args, 3)
            if isinstance(data, Variable):
                return OptionRule(mode=mode, action=action, code=code, variable=data, revert=revert)
            return OptionRule(mode=mode, action=action, code=code, data=data, revert=revert)
        case "nsid":
            if len(args) != 2:
                raise args.error("EDNS0 NSID rules can accept no more than one arg")
            return OptionRule(mode=mode, action=action, code=NSID_CODE, revert=revert)
        case "subnet":
            if len(args) != 4:
                raise args.error("EDNS0 subnet rules require three or four args")
            return SubnetRule(
                mode=mode,
                action=action,
                v4_bits=_mask_length(args, 2, "IPv4", 32),
                v6_bits=_mask_length(args, 3, "IPv6", 128),
                revert=revert,
            )
        case _:
            raise args.error(f"invalid rule type {_quoted(kind)}", 0)


def parse(lines: Sequence[Directive]) -> tuple[Rule, ...]:
    """Parse every `rewrite` line of a block, in order, into its rules.

    Raises:
        CorefileError: the first invalid rule, naming its line.
    """
    return tuple(parse_rule(words_of(d)) for d in lines)
