r"""Domain-name helpers: absolute lower-case form, zone matching, validation.

Names are text in the master-file form the chain works on (`chain.request.name_text`): a dot
inside a label is written `\.`, a backslash `\\` (a space and `"'();@` get a backslash too),
other odd bytes `\DDD`. So only a dot after an even number of backslashes ends a label:
`evil\.cluster.local.` is the label `evil.cluster` under `local.`, not a name in
`cluster.local.`. Every helper here reads names that way; a name without a backslash (nearly
every query) takes the plain string path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

MAX_LABEL_OCTETS: Final = 63
MAX_NAME_CHARS: Final = 255
"""The limits `valid_domain` applies: octets in a label; characters of the name's text written
without escapes (labels and dots, as before names could hold escapes)."""

_ESCAPE: Final = re.compile(r"\\(?:([0-9]{3})|(.)|$)", re.DOTALL)
r"""One escape in a label text: `\DDD` (group 1), `\X` (group 2), or a backslash at the end."""


def fqdn(name: str) -> str:
    """Return `name` absolute (with a trailing dot); `""` becomes the root `.`."""
    if not name or name == ".":
        return "."
    return name if name.endswith(".") else name + "."


def normalize(name: str) -> str:
    """Absolute and lower-cased (DNS case folding is ASCII only)."""
    return fqdn(name).lower()


def escaped_at(name: str, index: int) -> bool:
    """Whether the character at `index` follows an odd number of backslashes (is escaped)."""
    start = index
    while start > 0 and name[start - 1] == "\\":
        start -= 1
    return (index - start) % 2 == 1


def is_subdomain(name: str, zone: str) -> bool:
    r"""Whether lower-case absolute `name` is at or below lower-case absolute `zone`.

    The dot before `zone` must end a label: `a\.example.org.` is not in `example.org.`.
    """
    if zone == ".":
        return True
    if name == zone:
        return True
    cut = len(name) - len(zone) - 1
    if cut < 0 or name[cut] != "." or not name.endswith(zone):
        return False
    return cut == 0 or name[cut - 1] != "\\" or not escaped_at(name, cut)


def match_zone(name: str, zones: Iterable[str]) -> str | None:
    """Return the longest zone in `zones` that contains lower-case absolute `name`, or None."""
    best: str | None = None
    for z in zones:
        if is_subdomain(name, z) and (best is None or len(z) > len(best)):
            best = z
    return best


def split_labels(name: str) -> list[str]:
    r"""Split a relative name (no trailing dot) into label texts, escapes kept.

    Only dots that end a label split: `a\.b.c` -> `['a\.b', 'c']`; `""` -> `[""]` (as
    `str.split`).
    """
    if "\\" not in name:
        return name.split(".")
    labels: list[str] = []
    start = 0
    i = 0
    n = len(name)
    while i < n:
        c = name[i]
        if c == "\\":
            i += 2
            continue
        if c == ".":
            labels.append(name[start:i])
            start = i + 1
        i += 1
    labels.append(name[start:])
    return labels


def parent(name: str) -> str:
    r"""The absolute name one label up from absolute `name` (the root stays the root).

    `a\.b.example.org.` -> `example.org.`.
    """
    dot = name.find(".")
    if "\\" in name:
        while dot > 0 and escaped_at(name, dot):
            dot = name.find(".", dot + 1)
    if dot < 0:
        return "."
    return name[dot + 1 :] or "."


def label_octets(label: str) -> int | None:
    r"""Return the length on the wire of one label text, or None for a bad escape.

    `\DDD` is one octet, `\X` and any other character the UTF-8 octets of the character;
    `\256` and a trailing backslash are bad escapes.
    """
    if "\\" not in label:
        return len(label) if label.isascii() else len(label.encode())
    octets = 0
    end = 0
    for m in _ESCAPE.finditer(label):
        octets += len(label[end : m.start()].encode())
        end = m.end()
        digits, char = m.group(1), m.group(2)
        if digits is not None:
            if int(digits) > 0xFF:
                return None
            octets += 1
        elif char is not None:
            octets += len(char.encode())
        else:
            return None
    return octets + len(label[end:].encode())


def valid_domain(name: str) -> bool:
    r"""Whether an absolute name is a syntactically valid domain name (label and length limits).

    Escape-aware: `a\.b.` is one label of 3 octets, `\DDD` one octet; the name may be 255
    characters long when written without escapes (its labels and their dots).
    """
    if name == ".":
        return True
    if not name.endswith("."):
        return False
    if "\\" not in name:
        return len(name) <= MAX_NAME_CHARS and all(
            0 < len(label) <= MAX_LABEL_OCTETS for label in name[:-1].split(".")
        )
    if escaped_at(name, len(name) - 1):
        return False  # ends inside a label (`a\.`): not absolute
    total = 0
    for label in split_labels(name[:-1]):
        octets = label_octets(label)
        if octets is None or not 0 < octets <= MAX_LABEL_OCTETS:
            return False
        total += octets + 1
    return total <= MAX_NAME_CHARS


def is_reverse(zone: str) -> bool:
    """Whether an absolute zone is in-addr.arpa. or ip6.arpa. or a name below them."""
    z = zone.lower()
    return is_subdomain(z, "in-addr.arpa.") or is_subdomain(z, "ip6.arpa.")


def strip_zone(name: str, zone: str) -> str:
    """Return the part of `name` left of `zone`, without the joining dot ("" for the apex)."""
    if zone == ".":
        return name[:-1] if name != "." else ""
    if len(name) == len(zone):
        return ""
    return name[: len(name) - len(zone) - 1]
