"""Directive and ServerBlock: the parsed shape of a Corefile, with argument helpers.

Every helper raises CorefileError naming the file, the line and the plugin, so that a plugin's
`parse` never loses where a bad value came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from clusterdns.corefile.lexer import Token
from clusterdns.errors import CorefileError


@dataclass(frozen=True, slots=True)
class Directive:
    """One directive line (or one option line inside a directive's block).

    `plugin` is the top-level directive this line belongs to; errors are labelled with it.
    `block` is None when the line opened no `{ }` block, else the lines inside it.
    """

    token: Token
    args: tuple[Token, ...]
    block: tuple[Directive, ...] | None
    plugin: str

    @property
    def name(self) -> str:
        """The first word of the line (the directive or option name)."""
        return self.token.text

    @property
    def file(self) -> str:
        """The file this line was read from."""
        return self.token.file

    @property
    def line(self) -> int:
        """The line number of the first word."""
        return self.token.line

    @property
    def values(self) -> list[str]:
        """The argument texts."""
        return [t.text for t in self.args]

    @property
    def options(self) -> tuple[Directive, ...]:
        """The lines of the block, or none."""
        return self.block or ()

    def error(self, message: str) -> CorefileError:
        """Return a CorefileError at this line, labelled with the plugin name."""
        return CorefileError(message, file=self.file, line=self.line, directive=self.plugin)

    def arg_error(self, index: int, message: str) -> CorefileError:
        """Return a CorefileError at the line of argument `index`."""
        tok = self.args[index] if index < len(self.args) else self.token
        return CorefileError(message, file=tok.file, line=tok.line, directive=self.plugin)

    def expect_args(self, low: int, high: int | None = None) -> list[str]:
        """Return the argument texts, requiring between `low` and `high` of them.

        `high` None means exactly `low`; `high=-1` means no upper bound.
        """
        n = len(self.args)
        upper = low if high is None else high
        if n < low or (upper >= 0 and n > upper):
            prefix = "" if self.name == self.plugin else f"{self.name}: "
            raise self.error(prefix + _count_message(low, upper, n))
        return self.values

    def path_arg(self, index: int) -> str:
        """Return argument `index`, a file name, refusing one that holds a NUL byte.

        No file name can hold one (the OS call fails with ValueError, not OSError), so it is an
        error at this line whatever the plugin does with the file later.
        """
        text = self.args[index].text
        if "\0" in text:
            raise self.arg_error(index, nul_message(text))
        return text

    def expect_no_block(self) -> None:
        """Reject a `{ }` block after this line."""
        if self.block is not None:
            raise self.error(f"{self.name} takes no block")

    def walk(self) -> Iterator[Directive]:
        """Yield this line and every nested line, depth first (iteratively: any depth works)."""
        stack: list[Directive] = [self]
        while stack:
            line = stack.pop()
            yield line
            stack.extend(reversed(line.options))


def nul_message(text: str) -> str:
    """The error text for a file name holding a NUL byte (shown escaped)."""
    return f"invalid file name {text!r}: it holds a NUL byte"


def _count_message(low: int, high: int, got: int) -> str:
    if low == high:
        want = "no arguments" if low == 0 else f"exactly {low} argument{'s' if low != 1 else ''}"
    elif high < 0:
        want = f"at least {low} argument{'s' if low != 1 else ''}"
    else:
        want = f"{low} to {high} arguments"
    return f"expected {want}, got {got}"


@dataclass(frozen=True, slots=True)
class ServerBlock:
    """One server block: its keys (as written, after env expansion) and its directives."""

    keys: tuple[Token, ...]
    directives: tuple[Directive, ...]

    @property
    def file(self) -> str:
        """The file the block starts in."""
        return self.keys[0].file

    @property
    def line(self) -> int:
        """The line of the block's first key."""
        return self.keys[0].line

    def lines_of(self, name: str) -> list[Directive]:
        """Every line of directive `name` in this block, in the order written."""
        return [d for d in self.directives if d.name == name]
