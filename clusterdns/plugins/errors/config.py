"""The `errors` directive parsed into a frozen ErrorsConfig; nothing here logs or schedules.

Every problem is raised through `Directive.error()` / `arg_error()`, so it names the file and line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import format_duration, parse_duration

NAME: Final = "errors"

MAX_REGEXP_CHARS: Final = 10_000
"""Longest REGEXP a `consolidate` line accepts (as CoreDNS, to bound compile cost)."""

LEVELS: Final[dict[str, int]] = {
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
"""LEVEL words of `consolidate` -> logging levels."""

SHOW_FIRST: Final = "show_first"


@dataclass(frozen=True, slots=True, kw_only=True)
class Consolidate:
    """One `consolidate DURATION REGEXP [LEVEL] [show_first]` line."""

    period_s: float
    """How long matching errors are counted after the first one, in seconds (> 0)."""
    pattern: re.Pattern[str]
    """Matched anywhere in the error text (unanchored, like Go's `MatchString`)."""
    level: int = logging.ERROR
    """Logging level of the summary (and of the first error with `show_first`); default ERROR."""
    show_first: bool = False
    """Log the first error of a window at once; summarise only if more followed."""

    @property
    def period_text(self) -> str:
        """DURATION as Go prints it (`5m0s`, `30s`), for the summary line."""
        return format_duration(self.period_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorsConfig:
    """Everything one `errors` line says."""

    stacktrace: bool = False
    """Log a stack trace when the server recovers from a crash in this block; default off."""
    consolidate: tuple[Consolidate, ...] = ()
    """Consolidation rules in the order written; the first whose pattern matches wins."""


def parse(lines: Sequence[Directive]) -> ErrorsConfig:
    """Parse the (single) `errors` line of a block.

    Raises:
        CorefileError: a bad argument, option or value, with file and line.
    """
    d = lines[0]
    args = d.expect_args(0, 1)
    if args and args[0] != "stdout":
        raise d.arg_error(0, f"invalid log file: {args[0]}")
    stacktrace = False
    rules: list[Consolidate] = []
    for opt in d.options:
        if opt.name == "stacktrace":
            opt.expect_args(0)
            opt.expect_no_block()
            stacktrace = True
        elif opt.name == "consolidate":
            rules.append(_consolidate(opt))
        else:
            raise opt.error(f"unknown property '{opt.name}'")
    return ErrorsConfig(stacktrace=stacktrace, consolidate=tuple(rules))


def _consolidate(opt: Directive) -> Consolidate:
    args = opt.expect_args(2, 4)
    opt.expect_no_block()
    try:
        period_s = parse_duration(args[0])
    except ValueError as exc:
        raise opt.arg_error(0, f"consolidate: {exc}") from exc
    if period_s <= 0:
        raise opt.arg_error(0, f"consolidate: duration must be positive, got {args[0]}")
    text = args[1]
    if len(text) > MAX_REGEXP_CHARS:
        raise opt.arg_error(
            1, f"consolidate: regexp too long: {len(text)} > {MAX_REGEXP_CHARS} characters"
        )
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise opt.arg_error(1, f"consolidate: invalid regexp {text!r}: {exc}") from exc
    level: int | None = None
    show_first = False
    for index, word in enumerate(args[2:], start=2):
        if word in LEVELS:
            if level is not None:
                raise opt.arg_error(index, "consolidate: more than one log level")
            if show_first:
                raise opt.arg_error(index, "consolidate: the log level must come before show_first")
            level = LEVELS[word]
        elif word == SHOW_FIRST:
            show_first = True
        else:
            raise opt.arg_error(index, f"consolidate: unknown option '{word}'")
    return Consolidate(
        period_s=period_s,
        pattern=pattern,
        level=logging.ERROR if level is None else level,
        show_first=show_first,
    )
