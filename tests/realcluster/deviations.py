"""Machine-readable allowances for the differential test, one per entry of docs/deviations.md.

A difference between CoreDNS and clusterdns fails the differential test unless an allowance
below matches it. Every allowance names the D-number of its entry in docs/deviations.md (the
one documented list of intentional differences) and matches only the queries that entry covers;
a test checks that every D-number used here exists there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.realcluster.differential import ZONE, Query, Reply

DEVIATIONS_DOC: Final = Path(__file__).resolve().parents[2] / "docs" / "deviations.md"


@dataclass(frozen=True)
class Allowance:
    """A difference docs/deviations.md explains, and which queries it may affect."""

    id: str
    """The entry's number in docs/deviations.md, e.g. "D5"."""
    what: str
    applies: Callable[[Query, Reply, Reply], bool]
    """(query, CoreDNS's reply, clusterdns's reply) -> is this difference the documented one?"""


def _zone_part_not_lower(q: Query) -> bool:
    name = q.qname
    return name.lower().endswith(ZONE) and name[-len(ZONE) :] != ZONE


def _apex_ns_or_ns_dns(q: Query, coredns: Reply, clusterdns: Reply) -> bool:
    low = q.qname.lower()
    return _zone_part_not_lower(q) and (
        (low == ZONE and q.qtype in ("NS", "ANY")) or low == f"ns.dns.{ZONE}"
    )


def _non_in_class(q: Query, coredns: Reply, clusterdns: Reply) -> bool:
    return q.qclass != "IN" and clusterdns.rcode == "REFUSED"


ALLOWANCES: Final = (
    Allowance(
        "D5",
        "apex NS and ns.dns.<zone> recognised in any letter case (CoreDNS: lower case only)",
        _apex_ns_or_ns_dns,
    ),
    Allowance("D7", "a question whose class is not IN is REFUSED before the chain", _non_in_class),
)


def explain(q: Query, coredns: Reply, clusterdns: Reply) -> str | None:
    """The D-number that explains this difference, or None."""
    for a in ALLOWANCES:
        if a.applies(q, coredns, clusterdns):
            return a.id
    return None


def documented_ids() -> set[str]:
    """The D-numbers listed in docs/deviations.md."""
    return set(re.findall(r"^\|\s*(D\d+[a-z]?)\b", DEVIATIONS_DOC.read_text(), re.M))
