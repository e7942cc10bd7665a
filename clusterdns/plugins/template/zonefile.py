r"""One zone-file resource record as text -> a dnslib RR, read the way CoreDNS reads it.

CoreDNS parses a template's output with miekg/dns `NewRR`: only the first record counts, `;`
starts a comment, parentheses may wrap the data over several lines (`(1 60 60 60 60)`), a missing
TTL means 3600 and a missing class means IN, TTL and class may come in either order, relative
names are taken as absolute, and anything after the record's data is an error. Names (the
owner, and the names in NS, CNAME, PTR, MX, SRV and SOA data) are read here, with the escapes of
the master-file form (`\.` a dot inside a label, `\DDD` one byte, `\X` the character X),
byte for byte as miekg/dns reads them: dnslib would split at every dot and IDNA-encode the rest.
dnslib's `RR.fromZone` reads the other data fields; this module does the rest around it, because
dnslib rejects parentheses, defaults the TTL to 0, knows few class names and ignores trailing
garbage.

It must not depend on the plugin chain; it knows only text, dnslib and the name codec of
`chain.request` (the text form of names the whole chain shares).
"""

from __future__ import annotations

import re
from typing import Final

from dnslib import QTYPE, RR, DNSError, DNSLabel
from dnslib.label import DNSLabelError

from clusterdns.chain.request import text_labels
from clusterdns.dnsutil import rcode as rc

DEFAULT_TTL: Final = 3600
"""TTL of a record written without one (miekg/dns's default)."""

CLASSES: Final = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
"""Class mnemonics miekg/dns knows (besides CLASSnnn)."""

FIXED_RDATA: Final = {
    "A": 1,
    "AAAA": 1,
    "NS": 1,
    "CNAME": 1,
    "PTR": 1,
    "DNAME": 1,
    "MX": 2,
    "SRV": 4,
    "SOA": 7,
}
"""Types whose data has a fixed number of fields; more is "garbage after rdata"."""

NAME_FIELDS: Final[dict[str, tuple[tuple[int, str], ...]]] = {
    "NS": ((0, "label"),),
    "CNAME": ((0, "label"),),
    "PTR": ((0, "label"),),
    "MX": ((1, "label"),),
    "SRV": ((3, "target"),),
    "SOA": ((0, "mname"), (1, "rname")),
}
"""Data fields that are names: (index among the data fields, dnslib attribute)."""

_TTL_RE: Final = re.compile(r"(?:[0-9]+[smhdwSMHDW]?)+")
_TTL_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# dnslib raises whatever its field parsers raise; these are the ones bad text can produce.
_DNSLIB_ERRORS: Final = (
    DNSError,
    DNSLabelError,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
)


class RRError(ValueError):
    """Text that is not one valid resource record; says why."""


def _dnslib_types() -> dict[int, str]:
    return {int(k): str(v).upper() for k, v in QTYPE.forward.items()}


DNSLIB_TYPES: Final = _dnslib_types()
"""Record types dnslib has a name for, number -> mnemonic."""
TYPES: Final = {**{v: k for k, v in DNSLIB_TYPES.items()}, **rc.TYPES_BY_NAME}
"""Record type mnemonics dnslib and clusterdns know, upper-case -> number."""


def type_mnemonic(code: int) -> str:
    """Return the mnemonic of a type number, `TYPEnnn` when unknown."""
    return rc.TYPE_NAMES.get(code) or DNSLIB_TYPES.get(code) or f"TYPE{code}"


def type_number(text: str) -> int | None:
    """Return the type number of a mnemonic (`A`) or `TYPEnnn`, else None (case-sensitive)."""
    if text in TYPES:
        return TYPES[text]
    if text.startswith("TYPE") and text[4:].isdigit() and int(text[4:]) < 65536:
        return int(text[4:])
    return None


def class_number(text: str) -> int | None:
    """Return the class number of a mnemonic (`IN`) or `CLASSnnn`, else None (case-sensitive)."""
    if text in CLASSES:
        return CLASSES[text]
    if text.startswith("CLASS") and text[5:].isdigit() and int(text[5:]) < 65536:
        return int(text[5:])
    return None


def parse_ttl(text: str) -> int | None:
    """Return a TTL written as seconds or BIND units (`1h30m`), None if it is not a TTL.

    Raises:
        RRError: the value does not fit 32 bits.
    """
    if not _TTL_RE.fullmatch(text):
        return None
    if text.isdigit():
        total = int(text)
    else:
        total = 0
        for num, unit in re.findall(r"([0-9]+)([smhdwSMHDW]?)", text):
            total += int(num) * _TTL_UNITS[unit.lower() or "s"]
    if total > 0xFFFFFFFF:
        raise RRError(f"bad TTL {text}")
    return total


def tokens(text: str) -> list[str]:
    """Split the first record of `text` into fields (quotes kept, parentheses and comments gone).

    Raises:
        RRError: an unclosed quote or unbalanced parentheses.
    """
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    quoted = False
    i = 0
    n = len(text)

    def flush() -> None:
        if cur:
            out.append("".join(cur))
            cur.clear()

    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            cur.append(text[i : i + 2])
            i += 2
            continue
        if quoted:
            cur.append(c)
            if c == '"':
                quoted = False
            i += 1
            continue
        if c == '"':
            cur.append(c)
            quoted = True
        elif c == ";":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c == "(":
            flush()
            depth += 1
        elif c == ")":
            flush()
            depth -= 1
            if depth < 0:
                raise RRError("extra closing brace")
        elif c == "\n":
            flush()
            if depth == 0 and out:
                break
        elif c in " \t\r":
            flush()
        else:
            cur.append(c)
        i += 1
    if quoted:
        raise RRError("unclosed quote")
    if depth > 0:
        raise RRError("unbalanced brace")
    flush()
    return out


def name_labels(text: str) -> tuple[bytes, ...]:
    r"""Read a name written in master-file form into its wire labels (absolute; `@` is the root).

    `\.` is a dot inside a label, `\DDD` (three decimal digits) one byte, `\X` the character X;
    other characters stand for their UTF-8 bytes (see `chain.request.text_labels`).

    Raises:
        RRError: an empty label, a label over 63 or a name over 255 octets, a bad escape.
    """
    try:
        return text_labels(text)
    except ValueError as exc:
        raise RRError(str(exc)) from None


def parse_rr(text: str) -> RR:
    """Parse the first resource record in `text`.

    Raises:
        RRError: no record, an unknown type, missing or extra data, or data dnslib rejects.
    """
    fields = tokens(text)
    if not fields:
        raise RRError("no resource record")
    owner = name_labels(fields[0])
    ttl: int | None = None
    rclass: int | None = None
    i = 1
    while i < len(fields) and i < 3:
        f = fields[i]
        if ttl is None and (value := parse_ttl(f)) is not None:
            ttl = value
        elif rclass is None and (code := class_number(f.upper())) is not None:
            rclass = code
        else:
            break
        i += 1
    if i >= len(fields):
        raise RRError("missing record type")
    type_text = fields[i]
    rtype = type_number(type_text.upper())
    if rtype is None:
        raise RRError(f"unknown RR type {type_text}")
    rdata = fields[i + 1 :]
    name = type_mnemonic(rtype)
    want = FIXED_RDATA.get(name)
    if want is not None and len(rdata) < want:
        raise RRError(f"bad {type_text} data: expected {want} fields, got {len(rdata)}")
    if want is not None and len(rdata) > want:
        raise RRError(f"garbage after rdata: {rdata[want]}")
    names = [(attr, name_labels(rdata[k])) for k, attr in NAME_FIELDS.get(name, ())]
    fields_text = list(rdata)
    for k, _ in NAME_FIELDS.get(name, ()):
        fields_text[k] = "."  # read above; dnslib gets a placeholder it reads as it is
    line = " ".join([".", "0", "IN", name, *fields_text])
    try:
        records = RR.fromZone(line)
    except _DNSLIB_ERRORS as exc:
        raise RRError(f"bad {type_text} record: {exc}") from exc
    if len(records) != 1:
        raise RRError("not exactly one resource record")
    rr: RR = records[0]
    rr.rname = DNSLabel(owner)
    for attr, labels in names:
        setattr(rr.rdata, attr, DNSLabel(labels))
    rr.ttl = DEFAULT_TTL if ttl is None else ttl
    rr.rclass = rc.IN if rclass is None else rclass
    return rr
