r"""Split Corefile text into tokens that carry their file and line.

Rules (coredns/caddy lexer): a leading byte-order mark is dropped; whitespace (Go's
`unicode.IsSpace`) separates tokens and carriage returns outside quotes are ignored; a token that
starts with `"` runs to the next unescaped `"` and may span lines (a backslash escapes the next
character, but only `\"` loses its backslash); an unquoted `#` starts a comment that runs to the
end of the line, even in the middle of a word. `{$NAME}` / `{%NAME%}` expansion lives here too,
but the parser decides when to apply it. This module knows nothing about blocks or directives.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Final

from clusterdns.errors import CorefileError

_BOM: Final = "\ufeff"
_GO_SPACE: Final = frozenset("\t\n\v\f\r \x85\xa0")


@dataclass(frozen=True, slots=True)
class Token:
    """One Corefile word with where it came from."""

    text: str
    file: str
    line: int
    quoted: bool = False
    """Whether the word was written in double quotes (quoted braces are never structural)."""
    newlines: int = 0
    """Line breaks inside a quoted token (so the next token's line can be judged new or not)."""

    def error(self, message: str, directive: str | None = None) -> CorefileError:
        """Return (not raise) a CorefileError located at this token."""
        return CorefileError(message, file=self.file, line=self.line, directive=directive)

    def with_text(self, text: str) -> Token:
        """Return a copy of this token with other text (after `{$ENV}` expansion)."""
        if text == self.text:
            return self
        return Token(text, self.file, self.line, self.quoted, self.newlines)


def _is_space(ch: str) -> bool:
    """Go's unicode.IsSpace: ASCII/Latin-1 blanks plus the Unicode separator categories."""
    return ch in _GO_SPACE or (ch > "\xff" and unicodedata.category(ch) in ("Zs", "Zl", "Zp"))


def tokenize(text: str, file: str) -> list[Token]:
    """Split Corefile text into tokens.

    Raises:
        CorefileError: a quoted string is not closed before the end of the input.
    """
    tokens: list[Token] = []
    line = 1
    i = 1 if text.startswith(_BOM) else 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if _is_space(ch):
            i += 1
            continue
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        start_line = line
        if ch == '"':
            i += 1
            buf: list[str] = []
            newlines = 0
            closed = False
            while i < n:
                c = text[i]
                if c == '"':
                    closed = True
                    i += 1
                    break
                if c == "\\" and i + 1 < n:
                    # A backslash escapes the next character; only `\"` drops the backslash.
                    nxt = text[i + 1]
                    if nxt != '"':
                        buf.append("\\")
                    c = nxt
                    i += 1
                if c == "\n":
                    line += 1
                    newlines += 1
                buf.append(c)
                i += 1
            if not closed:
                raise CorefileError("unterminated quoted string", file=file, line=start_line)
            tokens.append(Token("".join(buf), file, start_line, quoted=True, newlines=newlines))
            continue
        word: list[str] = []
        while i < n:
            c = text[i]
            if c == "#" or c == "\n":
                break
            if c == "\r":
                i += 1
                continue
            if _is_space(c):
                break
            word.append(c)
            i += 1
        if word:
            tokens.append(Token("".join(word), file, start_line))
    return tokens


def expand_env(text: str) -> str:
    """Replace `{%NAME%}`, then `{$NAME}`, with the environment variable's value (unset: empty).

    As in CoreDNS, a reference runs from its opener to the first closer after it, so
    `{{$x}}` becomes `{` + value + `}`; an empty name (`{$}`) or a missing closer stops the
    expansion of that syntax for the rest of the token. Substituted values are not expanded again.
    """
    if "{" not in text:
        return text
    return _expand(_expand(text, "{%", "%}"), "{$", "}")


def _expand(text: str, opener: str, closer: str) -> str:
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(opener, pos)
        if start < 0:
            break
        end = text.find(closer, start)
        if end < 0 or end <= start + len(opener):
            break
        out.append(text[pos:start])
        out.append(_getenv(text[start + len(opener) : end]))
        pos = end + len(closer)
    out.append(text[pos:])
    return "".join(out)


def _getenv(name: str) -> str:
    try:
        return os.environ.get(name, "")
    except ValueError:  # a name the OS cannot encode (lone surrogate) is never set
        return ""
