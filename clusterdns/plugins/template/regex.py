r"""Go RE2 regular expressions, translated to Python `re` patterns with the same meaning.

The `match` option takes Go (RE2) syntax. Python's `re` reads most of it the same way but not all:
RE2 scopes inline flags (`(?i)`) to the rest of the enclosing group, its `$` only matches at the
very end of the text, `\z`, `\Q...\E`, `\x{...}`, octal escapes and POSIX classes (`[[:alpha:]]`)
have no Python spelling, `{,3}` is literal text, and Python accepts look-arounds, back-references
and possessive repeats that RE2 rejects. This module walks the pattern once, rejects what RE2
rejects (with RE2's wording) and emits an equivalent Python pattern in which every flag is applied
per atom, so no Python inline-flag rules are involved. Group numbers are kept; group names are
kept aside (Python never sees them, so RE2 names such as `1st` work).

It knows nothing about DNS or Corefiles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_REPEAT: Final = 1000
"""RE2's largest repeat count in `{n,m}`."""

MAX_RUNE: Final = 0x10FFFF

_POSIX: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_SIMPLE_ESCAPES: Final = {"a": "\a", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\v"}
_PERL_CLASSES: Final = frozenset("dDsSwW")
_FLAG_CHARS: Final = frozenset("imsU")


class RegexError(ValueError):
    """A pattern RE2 would not compile (or that clusterdns cannot translate); says why."""


@dataclass(frozen=True, slots=True)
class Regex:
    """A compiled RE2 pattern: the text as written, the Python pattern, and the group names."""

    source: str
    """The pattern as written in the Corefile (the template's `.Regex`)."""
    names: tuple[str, ...]
    """The RE2 name of each capturing group, "" for unnamed ones; index 0 is group 1."""
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    def search(self, text: str) -> tuple[str, ...] | None:
        """Return the whole match and every group ("" when a group took no part), or None."""
        m = self.pattern.search(text)
        if m is None:
            return None
        return (m.group(0), *(g or "" for g in m.groups()))

    def groups(self, text: str) -> tuple[tuple[str, ...], dict[str, str]] | None:
        """Return the match list and the group map (numbers and names) a template sees, or None."""
        match = self.search(text)
        if match is None:
            return None
        group = {str(i): m for i, m in enumerate(match)}
        for i, name in enumerate(self.names, start=1):
            if name:
                group[name] = match[i]
        return match, group


def compile_re2(source: str) -> Regex:
    """Compile an RE2 pattern.

    Raises:
        RegexError: the pattern is not valid RE2, or uses an RE2 feature Python cannot express.
    """
    tr = _Translator(source)
    text = tr.translate()
    try:
        pattern = re.compile(text, re.ASCII)
    except re.error as exc:  # a translation gap; report it rather than crash
        raise RegexError(f"cannot translate regex for Python: {exc}") from exc
    if pattern.groups != len(tr.names):
        raise RegexError("cannot translate regex for Python: group count differs")
    return Regex(source=source, names=tuple(tr.names), pattern=pattern)


@dataclass(frozen=True, slots=True)
class _Flags:
    i: bool = False
    m: bool = False
    s: bool = False
    U: bool = False


def _py_char(cp: int) -> str:
    """A Python escape for one code point, safe both inside and outside a class."""
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _complement(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_RUNE:
        out.append((nxt, MAX_RUNE))
    return tuple(out)


class _Translator:
    """One pass over an RE2 pattern producing the equivalent Python pattern."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0
        self.names: list[str] = []

    def error(self, what: str, frag: str) -> RegexError:
        return RegexError(f"{what}: `{frag}`")

    def translate(self) -> str:
        out = self.alternation(_Flags(), top=True)
        if self.pos < len(self.src):  # only a stray ')' stops the top level early
            raise self.error("unexpected )", self.src)
        return out

    def alternation(self, flags: _Flags, *, top: bool) -> str:
        """Translate up to the `)` closing the current group (not consumed) or the end."""
        src = self.src
        alts: list[str] = []
        atoms: list[str] = []
        # kind of the last item: None (nothing to repeat), "atom", "assert", "repeat"
        last: str | None = None
        while self.pos < len(src):
            c = src[self.pos]
            if c == "|":
                alts.append("".join(atoms))
                atoms, last = [], None
                self.pos += 1
            elif c == ")":
                if top:
                    raise self.error("unexpected )", src)
                break
            elif c == "(":
                group, new_flags = self.group(flags)
                if new_flags is not None:
                    flags, last = new_flags, None
                else:
                    atoms.append(group)
                    last = "atom"
            elif c in "*+?":
                self.repeat(atoms, last, c, 1, flags)
                last = "repeat"
            elif c == "{":
                counts = self.repeat_counts()
                if counts is None:
                    atoms.append(self.literal("{", flags))
                    last = "atom"
                    self.pos += 1
                else:
                    text, end = counts
                    self.repeat(atoms, last, text, end - self.pos, flags)
                    last = "repeat"
            elif c == "[":
                atoms.append(self.char_class(flags))
                last = "atom"
            elif c == ".":
                atoms.append("(?s:.)" if flags.s else ".")
                last = "atom"
                self.pos += 1
            elif c == "^":
                atoms.append("(?m:^)" if flags.m else "\\A")
                last = "assert"
                self.pos += 1
            elif c == "$":
                atoms.append("(?m:$)" if flags.m else "\\Z")
                last = "assert"
                self.pos += 1
            elif c == "\\":
                items, kind = self.escape(flags)
                atoms.extend(items)
                if items:
                    last = kind
            else:
                atoms.append(self.literal(c, flags))
                last = "atom"
                self.pos += 1
        alts.append("".join(atoms))
        return "|".join(alts)

    def repeat(
        self, atoms: list[str], last: str | None, op: str, width: int, flags: _Flags
    ) -> None:
        start = self.pos
        self.pos += width
        lazy = self.pos < len(self.src) and self.src[self.pos] == "?"
        if lazy:
            self.pos += 1
        frag = self.src[start : self.pos]
        if last is None:
            raise self.error("missing argument to repetition operator", frag)
        if last == "repeat":
            raise self.error("invalid nested repetition operator", self.src[start - 1 : self.pos])
        if flags.U:
            lazy = not lazy
        atom = atoms[-1]
        if last == "assert":
            atom = f"(?:{atom})"
        atoms[-1] = atom + op + ("?" if lazy else "")

    def repeat_counts(self) -> tuple[str, int] | None:
        """Parse `{n}`, `{n,}` or `{n,m}` at pos; None when it is not one (then `{` is literal)."""
        m = re.match(r"\{(0|[1-9][0-9]*)(,(0|[1-9][0-9]*)?)?\}", self.src[self.pos :])
        if m is None:
            return None
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else (-1 if m.group(3) is None else int(m.group(3)))
        if lo > MAX_REPEAT or hi > MAX_REPEAT or (hi >= 0 and hi < lo):
            raise self.error("invalid repeat count", m.group(0))
        text = f"{{{lo}}}" if m.group(2) is None else (f"{{{lo},}}" if hi < 0 else f"{{{lo},{hi}}}")
        return text, self.pos + m.end()

    def group(self, flags: _Flags) -> tuple[str, _Flags | None]:
        """Translate a group at `(`; a bare flag group returns the new flags instead of text."""
        src = self.src
        start = self.pos
        if src.startswith("(?P<", start) or (
            src.startswith("(?<", start) and not src.startswith(("(?<=", "(?<!"), start)
        ):
            open_len = 4 if src[start + 2] == "P" else 3
            end = src.find(">", start)
            if end < 0:
                raise self.error("invalid named capture", src[start:])
            name = src[start + open_len : end]
            if not name or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name):
                raise self.error("invalid named capture", src[start : end + 1])
            if name in self.names:
                raise self.error("duplicate capture group name", src[start : end + 1])
            self.names.append(name)
            self.pos = end + 1
            return "(" + self.group_body(flags, start) + ")", None
        if src.startswith("(?", start):
            i = start + 2
            while i < len(src) and (src[i] in _FLAG_CHARS or src[i] == "-"):
                i += 1
            spec = src[start + 2 : i]
            if i >= len(src) or src[i] not in ":)" or not _valid_flags(spec, closing=src[i]):
                frag = src[start : i + 1] if i < len(src) else src[start:]
                raise self.error("invalid or unsupported Perl syntax", frag)
            new = _apply_flags(flags, spec)
            self.pos = i + 1
            if src[i] == ")":
                return "", new
            return "(?:" + self.group_body(new, start) + ")", None
        self.names.append("")
        self.pos += 1
        return "(" + self.group_body(flags, start) + ")", None

    def group_body(self, flags: _Flags, start: int) -> str:
        inner = self.alternation(flags, top=False)
        if self.pos >= len(self.src):
            raise self.error("missing closing )", self.src[start:])
        self.pos += 1  # the ')'
        return inner

    def literal(self, ch: str, flags: _Flags) -> str:
        if flags.i:
            variants = sorted({ch, ch.lower(), ch.upper(), ch.casefold()} - {""})
            variants = [v for v in variants if len(v) == 1]
            if len(variants) > 1:
                return "[" + "".join(_py_char(ord(v)) for v in variants) + "]"
        return _py_char(ord(ch))

    def escape(self, flags: _Flags) -> tuple[list[str], str]:
        """Translate an escape outside a class; returns the atoms and their kind."""
        src = self.src
        start = self.pos
        if start + 1 >= len(src):
            raise self.error("trailing backslash at end of expression", "")
        c = src[start + 1]
        if c == "Q":
            end = src.find("\\E", start + 2)
            text = src[start + 2 :] if end < 0 else src[start + 2 : end]
            self.pos = len(src) if end < 0 else end + 2
            return [self.literal(ch, flags) for ch in text], "atom"
        if c in "AzbB":
            self.pos += 2
            return ["\\Z" if c == "z" else "\\" + c], "assert"
        if c in _PERL_CLASSES:
            self.pos += 2
            return ["\\" + c], "atom"
        if c in "pP":
            raise self.error("Unicode character classes are not supported", src[start : start + 3])
        if c == "C":
            raise self.error("invalid escape sequence", "\\C")
        cp = self.escaped_char()
        return [self.literal(chr(cp), flags)], "atom"

    def escaped_char(self) -> int:
        r"""Parse a character escape at pos (`\n`, `\x41`, `\x{41}`, octal, punctuation)."""
        src = self.src
        start = self.pos
        if start + 1 >= len(src):
            raise self.error("trailing backslash at end of expression", "")
        c = src[start + 1]
        if c in "1234567" and not (start + 2 < len(src) and src[start + 2] in "01234567"):
            raise self.error("invalid escape sequence", src[start : start + 2])
        if c in "01234567":
            i = start + 2
            while i < len(src) and i < start + 4 and src[i] in "01234567":
                i += 1
            self.pos = i
            return int(src[start + 1 : i], 8)
        if c == "x":
            if start + 2 < len(src) and src[start + 2] == "{":
                end = src.find("}", start + 3)
                digits = src[start + 3 : end] if end > 0 else ""
                if end < 0 or not digits or not _is_hex(digits) or int(digits, 16) > MAX_RUNE:
                    raise self.error(
                        "invalid escape sequence", src[start : end + 1 if end > 0 else None]
                    )
                self.pos = end + 1
                return int(digits, 16)
            digits = src[start + 2 : start + 4]
            if len(digits) != 2 or not _is_hex(digits):
                raise self.error("invalid escape sequence", src[start : start + 4])
            self.pos = start + 4
            return int(digits, 16)
        if c in _SIMPLE_ESCAPES:
            self.pos = start + 2
            return ord(_SIMPLE_ESCAPES[c])
        if ord(c) < 0x80 and not c.isalnum():
            self.pos = start + 2
            return ord(c)
        raise self.error("invalid escape sequence", src[start : start + 2])

    def char_class(self, flags: _Flags) -> str:
        """Translate `[...]` at pos."""
        src = self.src
        start = self.pos
        self.pos += 1
        negate = self.pos < len(src) and src[self.pos] == "^"
        if negate:
            self.pos += 1
        items: list[str] = []
        first = True
        while True:
            if self.pos >= len(src):
                raise self.error("missing closing ]", src[start:])
            c = src[self.pos]
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            if c == "[" and src.startswith("[:", self.pos):
                end = src.find(":]", self.pos + 2)
                if end >= 0:
                    name = src[self.pos + 2 : end]
                    neg = name.startswith("^")
                    ranges = _POSIX.get(name[1:] if neg else name)
                    if ranges is None:
                        raise self.error("invalid character class range", src[self.pos : end + 2])
                    if neg:
                        ranges = _complement(ranges)
                    items.extend(_py_range(lo, hi) for lo, hi in ranges)
                    self.pos = end + 2
                    continue
            if c == "\\" and self.pos + 1 < len(src) and src[self.pos + 1] in _PERL_CLASSES:
                items.append(src[self.pos : self.pos + 2])
                self.pos += 2
                continue
            if c == "\\" and self.pos + 1 < len(src) and src[self.pos + 1] in "pPQ":
                frag = src[self.pos : self.pos + 3]
                raise self.error("this escape is not supported in a character class", frag)
            range_start = self.pos
            lo = self.class_char()
            hi = lo
            if self.pos + 1 < len(src) and src[self.pos] == "-" and src[self.pos + 1] != "]":
                self.pos += 1
                hi = self.class_char()
                if hi < lo:
                    raise self.error("invalid character class range", src[range_start : self.pos])
            items.append(_py_range(lo, hi))
        text = "[" + ("^" if negate else "") + "".join(items) + "]"
        return f"(?i:{text})" if flags.i else text

    def class_char(self) -> int:
        if self.pos >= len(self.src):
            raise self.error("missing closing ]", self.src)
        if self.src[self.pos] == "\\":
            return self.escaped_char()
        cp = ord(self.src[self.pos])
        self.pos += 1
        return cp


def _py_range(lo: int, hi: int) -> str:
    return _py_char(lo) if lo == hi else f"{_py_char(lo)}-{_py_char(hi)}"


def _is_hex(text: str) -> bool:
    return all(ch in "0123456789abcdefABCDEF" for ch in text)


def _valid_flags(spec: str, *, closing: str) -> bool:
    """RE2 flag syntax: `[imsU]*(-[imsU]+)?`; empty only in a plain non-capturing `(?:`."""
    if not spec:
        return closing == ":"
    _, sep, off = spec.partition("-")
    return "-" not in off and not (sep and not off)


def _apply_flags(flags: _Flags, spec: str) -> _Flags:
    on, _, off = spec.partition("-")
    values = {"i": flags.i, "m": flags.m, "s": flags.s, "U": flags.U}
    for ch in on:
        values[ch] = True
    for ch in off:
        values[ch] = False
    return _Flags(i=values["i"], m=values["m"], s=values["s"], U=values["U"])
