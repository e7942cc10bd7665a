"""Rcode, type and class numbers and their mnemonics (as CoreDNS prints them)."""

from __future__ import annotations

from typing import Final

NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16

RCODE_NAMES: Final = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    16: "BADSIG",
    17: "BADKEY",
    18: "BADTIME",
    19: "BADMODE",
    20: "BADNAME",
    21: "BADALG",
    22: "BADTRUNC",
    23: "BADCOOKIE",
}
# 16 prints as BADSIG (miekg/dns's table, used by CoreDNS's logs and metrics); BADVERS parses too.
RCODES_BY_NAME: Final = {**{v: k for k, v in RCODE_NAMES.items()}, "BADVERS": 16}

# Error rcodes that mean "the chain did not write" (spec §4.5).
CLIENT_WRITE_ERRORS: Final = frozenset({SERVFAIL, REFUSED, FORMERR, NOTIMP})


def rcode_name(code: int) -> str:
    """Mnemonic for an rcode, `RCODE<n>` when unknown."""
    return RCODE_NAMES.get(code, f"RCODE{code}")


TYPE_NAMES: Final = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    39: "DNAME",
    41: "OPT",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    50: "NSEC3",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
    257: "CAA",
}
TYPES_BY_NAME: Final = {v: k for k, v in TYPE_NAMES.items()}

A: Final = 1
NS: Final = 2
CNAME: Final = 5
SOA: Final = 6
PTR: Final = 12
HINFO: Final = 13
MX: Final = 15
TXT: Final = 16
AAAA: Final = 28
SRV: Final = 33
OPT: Final = 41
IXFR: Final = 251
AXFR: Final = 252
ANY: Final = 255


def type_name(code: int) -> str:
    """Mnemonic for a query type, `TYPE<n>` when unknown (RFC 3597)."""
    return TYPE_NAMES.get(code, f"TYPE{code}")


def type_code(text: str) -> int | None:
    """Query type number for a mnemonic or `TYPE<n>`, None if neither."""
    t = text.upper()
    if t in TYPES_BY_NAME:
        return TYPES_BY_NAME[t]
    if t.startswith("TYPE") and t[4:].isdigit() and int(t[4:]) < 65536:
        return int(t[4:])
    return None


CLASS_NAMES: Final = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
CLASSES_BY_NAME: Final = {v: k for k, v in CLASS_NAMES.items()}
IN: Final = 1


def class_name(code: int) -> str:
    """Mnemonic for a class, `CLASS<n>` when unknown."""
    return CLASS_NAMES.get(code, f"CLASS{code}")


# The `type` label values of coredns_dns_requests_total (spec §11.2); everything else is "other".
MONITORED_TYPES: Final = frozenset(
    {
        "A",
        "AAAA",
        "CNAME",
        "DNSKEY",
        "DS",
        "MX",
        "NSEC3",
        "NSEC",
        "NS",
        "PTR",
        "RRSIG",
        "SOA",
        "SRV",
        "TXT",
        "HTTPS",
        "SVCB",
        "IXFR",
        "AXFR",
        "ANY",
    }
)


def metric_type(code: int) -> str:
    """The `type` label for a query type."""
    name = TYPE_NAMES.get(code)
    return name if name in MONITORED_TYPES and name is not None else "other"
