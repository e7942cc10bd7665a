"""The `log` lines of one block parsed into rules; nothing here formats or logs.

Every problem is raised through `Directive.error()` / `arg_error()`, so it names the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.names import normalize
from clusterdns.dnsutil.response import ResponseClass

NAME: Final = "log"

COMMON_FORMAT: Final = (
    '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
    "{rcode} {>rflags} {rsize} {duration}"
)
"""The default format; `{common}` in a FORMAT expands to it."""

COMBINED_FORMAT: Final = COMMON_FORMAT + ' "{>opcode}"'
"""`{combined}`: the common format plus the query opcode."""

ALL_CLASSES: Final = frozenset({ResponseClass.ALL})


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One NAME of a `log` line, with the line's format and classes."""

    name: str
    """Zone the query name must be at or below (absolute, lower-case); default `.`."""
    format: str
    """The line format, `{common}` and `{combined}` already expanded; default COMMON_FORMAT."""
    classes: frozenset[ResponseClass] = ALL_CLASSES
    """Reply classes that are logged; `all` (the default) logs every reply."""

    @property
    def logs_all(self) -> bool:
        """Whether every reply is logged, so the reply need not be classified."""
        return ResponseClass.ALL in self.classes


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """All `log` lines of a block."""

    rules: tuple[Rule, ...]
    """In the order written; for each query only the first rule whose name covers it is used."""


def parse(lines: Sequence[Directive]) -> LogConfig:
    """Parse every `log` line of a block, keeping their rules in order.

    FORMAT is only recognised when there are at least two arguments and the last one contains
    `{`; a single argument is always a NAME (quirk Q28).

    Raises:
        CorefileError: an unknown option or class, with file and line.
    """
    rules: list[Rule] = []
    for d in lines:
        names = d.values
        fmt = COMMON_FORMAT
        if len(names) >= 2 and "{" in names[-1]:
            fmt = expand_format(names[-1])
            names = names[:-1]
        classes = _classes(d)
        rules.extend(Rule(name=normalize(n), format=fmt, classes=classes) for n in names or ["."])
    return LogConfig(rules=tuple(rules))


def expand_format(text: str) -> str:
    """Replace every `{common}` and `{combined}` in a FORMAT by the format it names."""
    return text.replace("{common}", COMMON_FORMAT).replace("{combined}", COMBINED_FORMAT)


def _classes(d: Directive) -> frozenset[ResponseClass]:
    found: set[ResponseClass] = set()
    for opt in d.options:
        if opt.name != "class":
            raise opt.error(f"unknown property '{opt.name}'")
        words = opt.expect_args(1, -1)
        opt.expect_no_block()
        for index, word in enumerate(words):
            try:
                found.add(ResponseClass(word))
            except ValueError:
                raise opt.arg_error(
                    index, f"invalid class '{word}': want success, denial, error or all"
                ) from None
    return frozenset(found) if found else ALL_CLASSES
