"""Split Corefile text into tokens that carry their file and line.

Rules (coredns/caddy lexer): whitespace separates tokens and carriage returns are ignored; a token
that starts with `"` runs to the next unescaped `"` (only `\\"` is an escape inside quotes, any
other backslash is kept) and may span lines; an unquoted `#` starts a comment that runs to the end
of the line, even in the middle of a word.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from clusterdns.errors import CorefileError


@dataclass(frozen=True, slots=True)
class Token:
    """One Corefile word with where it came from."""

    text: str
    file: str
    line: int
    quoted: bool = False
    newlines: int = 0
    """Line breaks inside a quoted token (so the next token's line can be judged new or not)."""

    def error(self, message: str, directive: str | None = None) -> CorefileError:
        """Return (not raise) a CorefileError located at this token."""
        return CorefileError(message, file=self.file, line=self.line, directive=directive)


def tokenize(text: str, file: str) -> list[Token]:
    """Split Corefile text into tokens.

    Raises:
        CorefileError: a quoted string is not closed before the end of the input.
    """
    tokens: list[Token] = []
    line = 1
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch.isspace():
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
                if c == "\\" and i + 1 < n and text[i + 1] == '"':
                    buf.append('"')
                    i += 2
                    continue
                if c == '"':
                    closed = True
                    i += 1
                    break
                if c == "\n":
                    line += 1
                    newlines += 1
                buf.append(c)
                i += 1
            if not closed:
                raise CorefileError("unterminated quoted string", file=file, line=start_line)
            tokens.append(Token("".join(buf), file, start_line, quoted=True, newlines=newlines))
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] != "#":
            j += 1
        tokens.append(Token(text[i:j], file, start_line))
        if j < n and text[j] == "#":
            end = text.find("\n", j)
            j = n if end < 0 else end
        i = j
    return tokens


_ENV = re.compile(r"\{\$([^}$]*)\}|\{%([^}%]*)%\}")


def expand_env(text: str) -> str:
    """Replace `{$NAME}` and `{%NAME%}` with the environment variable's value (unset: empty)."""
    if "{" not in text:
        return text
    return _ENV.sub(lambda m: os.environ.get(m.group(1) or m.group(2) or "", ""), text)
