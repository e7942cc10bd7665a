"""Regular expressions of rewrite rules and the `{N}` group substitution of their targets.

CoreDNS compiles these patterns with Go's RE2; clusterdns uses Python's `re`, whose syntax agrees
for everything rewrite rules are normally written with (groups, classes, anchors, repeats).
Knows nothing about DNS or Corefiles.
"""

from __future__ import annotations

import re
from typing import Final

MAX_PATTERN_CHARS: Final = 10_000
"""Longest pattern accepted (CoreDNS's limit against costly compilation)."""
MAX_GROUP_REF: Final = 100
"""`{0}` to `{100}` are counted as group references in a target."""


class PatternError(ValueError):
    """A pattern that is too long or does not compile; the message says which."""


def compile_pattern(text: str) -> re.Pattern[str]:
    """Compile a rule's pattern.

    Raises:
        PatternError: too long (`regex pattern too long: N > 10000`) or invalid
            (`invalid regex matching pattern: TEXT`).
    """
    if len(text) > MAX_PATTERN_CHARS:
        raise PatternError(f"regex pattern too long: {len(text)} > {MAX_PATTERN_CHARS}")
    try:
        return re.compile(text)
    except re.error as exc:
        raise PatternError(f"invalid regex matching pattern: {text}") from exc


def group_refs(target: str) -> int:
    """How many distinct `{N}` references (N from 0 to 100) a target uses."""
    return sum(1 for i in range(MAX_GROUP_REF + 1) if "{" + str(i) + "}" in target)


def check_groups(pattern: re.Pattern[str], target: str) -> None:
    """Reject a target that uses more group references than the pattern has groups.

    Raises:
        PatternError: with CoreDNS's wording.
    """
    if group_refs(target) > pattern.groups:
        raise PatternError(
            f"the rewrite regex pattern ({target}) uses more subexpressions than its "
            f"corresponding matching regex pattern ({pattern.pattern})"
        )


def expand(target: str, match: re.Match[str]) -> str:
    """Replace `{0}`, `{1}`... in `target` with the match's groups, one after the other.

    As in CoreDNS the replacements are applied in group order, each over the result of the
    previous one; a group that did not take part counts as empty.
    """
    out = target
    for index in range(match.re.groups + 1):
        out = out.replace("{" + str(index) + "}", match.group(index) or "")
    return out


def rewrite_string(pattern: re.Pattern[str], target: str, text: str) -> str:
    """Return the expanded target if `pattern` is found in `text`, else `text` unchanged.

    The whole text is replaced, not only the part that matched (as CoreDNS).
    """
    match = pattern.search(text)
    return text if match is None else expand(target, match)
