"""Faster accessors for dnslib's range-checked integer fields, with the same checks.

dnslib declares header fields (`id`, `bitmap`, the four counts), record fields (`rtype`,
`rclass`, `ttl`, `rdlength`) and many RDATA fields (SRV's `port`, MX's `preference`, ...) as
Python properties whose getter and setter are Python functions, and the setter formats the
attribute name on every call. Building, parsing or packing one reply goes through them 100 to
200 times, about a quarter of dnslib's cost. `install()` replaces each such property by one that
stores the value in the same `_name` attribute under the same range check and raises the same
ValueError, with a C-level getter (`operator.attrgetter`); `DNSHeader.__init__` and
`DNSRecord.set_header_qa` (run on every `add_answer` and `pack`) store in-range values at once
and leave anything else to dnslib's own code. dnslib's behaviour does not change;
the version is pinned in pyproject.toml and `tests/dnsutil/test_dnslib_fields.py` checks the
replacement against the original on every field.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from dnslib import dns

_ORIGINAL_GETTER: Final = "range_property.<locals>.getter"


def _range_field(attr: str, low: int, high: int) -> property:
    name = "_" + attr

    def setter(obj: Any, value: object) -> None:
        if isinstance(value, int) and low <= value <= high:
            obj.__dict__[name] = value
        else:
            raise ValueError(
                "Attribute '%s' must be between %d-%d [%s]" % (attr, low, high, value)  # noqa: UP031
            )

    return property(operator.attrgetter(name), setter)


def range_fields() -> list[tuple[type, str, str, int, int]]:
    """Every range-checked field of dnslib's record classes: (class, field, attr, low, high)."""
    found: list[tuple[type, str, str, int, int]] = []
    for cls in vars(dns).values():
        if not isinstance(cls, type):
            continue
        for field, value in vars(cls).items():
            if not isinstance(value, property) or value.fset is None:
                continue
            getter: Callable[..., Any] | None = value.fget
            if getattr(getter, "__qualname__", "") != _ORIGINAL_GETTER:
                continue
            free = value.fset.__code__.co_freevars
            cells = dict(
                zip(free, (c.cell_contents for c in value.fset.__closure__ or ()), strict=True)
            )
            found.append((cls, field, cells["attr"], cells["min"], cells["max"]))
    return found


REPLACED: Final[list[tuple[type, str, property]]] = []
"""What `install()` replaced: (class, field, dnslib's own property)."""

ORIGINAL_HEADER_INIT: Final = dns.DNSHeader.__init__
ORIGINAL_SET_HEADER_QA: Final = dns.DNSRecord.set_header_qa
_U16: Final = 65535


def _header_init(
    self: Any,
    id: Any = None,
    bitmap: Any = None,
    q: Any = 0,
    a: Any = 0,
    auth: Any = 0,
    ar: Any = 0,
    **args: Any,
) -> None:
    """DNSHeader(id, bitmap, counts) with every value in range, stored at once.

    Anything else (a random ID, flag keywords, a value out of range) goes through dnslib's own
    __init__.
    """
    if (
        args
        or type(id) is not int
        or type(bitmap) is not int
        or type(q) is not int
        or type(a) is not int
        or type(auth) is not int
        or type(ar) is not int
        or not (
            0 <= id <= _U16
            and 0 <= bitmap <= _U16
            and 0 <= q <= _U16
            and 0 <= a <= _U16
            and 0 <= auth <= _U16
            and 0 <= ar <= _U16
        )
    ):
        ORIGINAL_HEADER_INIT(self, id, bitmap, q, a, auth, ar, **args)
        return
    d = self.__dict__
    d["_id"], d["_bitmap"], d["_q"], d["_a"], d["_auth"], d["_ar"] = id, bitmap, q, a, auth, ar


def _set_header_qa(self: Any) -> None:
    """The section counts into the header (dnslib runs this on every add_* and pack)."""
    q, a, auth, ar = len(self.questions), len(self.rr), len(self.auth), len(self.ar)
    if q > _U16 or a > _U16 or auth > _U16 or ar > _U16:
        ORIGINAL_SET_HEADER_QA(self)  # raises dnslib's ValueError
        return
    d = self.header.__dict__
    d["_q"], d["_a"], d["_auth"], d["_ar"] = q, a, auth, ar


def install() -> None:
    """Replace the range-checked properties and the header helpers (once per process)."""
    for cls, field, attr, low, high in range_fields():
        REPLACED.append((cls, field, vars(cls)[field]))
        setattr(cls, field, _range_field(attr, low, high))
    dns.DNSHeader.__init__ = _header_init
    dns.DNSRecord.set_header_qa = _set_header_qa
