"""Faster accessors for dnslib's range-checked integer fields, with the same checks.

dnslib declares header fields (`id`, `bitmap`, the four counts), record fields (`rtype`,
`rclass`, `ttl`, `rdlength`) and many RDATA fields (SRV's `port`, MX's `preference`, ...) as
Python properties whose getter and setter are Python functions, and the setter formats the
attribute name on every call. Building, parsing or packing one reply goes through them 100 to
200 times, about a quarter of dnslib's cost. `install()` replaces each such property by one that
stores the value in the same `_name` attribute under the same range check and raises the same
ValueError, with a C-level getter (`operator.attrgetter`). dnslib's behaviour does not change;
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


def install() -> None:
    """Replace the range-checked properties (once per process)."""
    for cls, field, attr, low, high in range_fields():
        REPLACED.append((cls, field, vars(cls)[field]))
        setattr(cls, field, _range_field(attr, low, high))
