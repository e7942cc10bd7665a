"""The replaced dnslib field accessors behave exactly as dnslib's own."""

from __future__ import annotations

import re
from typing import Any

import pytest
from dnslib import RR, SRV, A, DNSHeader, DNSRecord

from clusterdns.dnsutil import dnslib_fields
from clusterdns.dnsutil.codec import parse_message

PROBES = (0, 1, True, 255, 256, 65535, 65536, 4294967295, 4294967296, -1, "1", 1.0, None)


def test_every_range_field_was_replaced() -> None:
    fields = {(cls.__name__, field) for cls, field, _ in dnslib_fields.REPLACED}
    assert {("DNSHeader", "id"), ("DNSHeader", "bitmap"), ("RR", "ttl"), ("RR", "rtype")} <= fields
    assert ("SRV", "port") in fields
    assert not dnslib_fields.range_fields()  # nothing left with dnslib's slow accessor


@pytest.mark.parametrize(
    ("cls", "field", "original"),
    dnslib_fields.REPLACED,
    ids=[f"{cls.__name__}.{field}" for cls, field, _ in dnslib_fields.REPLACED],
)
def test_replacement_accepts_and_rejects_what_dnslib_does(
    cls: type[Any], field: str, original: property
) -> None:
    ours, theirs = object.__new__(cls), object.__new__(cls)
    replacement = vars(cls)[field]
    assert original.fset is not None and replacement.fset is not None
    assert original.fget is not None and replacement.fget is not None
    for value in PROBES:
        try:
            original.fset(theirs, value)
            expected: object = original.fget(theirs)
        except ValueError as exc:
            with pytest.raises(ValueError) as raised:
                replacement.fset(ours, value)
            assert str(raised.value) == str(exc)
            continue
        replacement.fset(ours, value)
        assert replacement.fget(ours) == expected
        assert vars(ours) == vars(theirs)


def test_messages_round_trip_unchanged() -> None:
    msg = DNSRecord(DNSHeader(id=4242, bitmap=0x8580), q=None)
    msg.add_question(DNSRecord.question("svc.example.", "SRV").q)
    msg.add_answer(RR("svc.example.", 33, rdata=SRV(10, 20, 8443, "t.example."), ttl=30))
    msg.add_ar(RR("t.example.", rdata=A("192.0.2.7"), ttl=4294967295))
    wire = bytes(msg.pack())
    again = parse_message(wire)
    assert bytes(again.pack()) == wire
    assert (again.header.id, again.rr[0].rdata.port, again.ar[0].ttl) == (4242, 8443, 4294967295)


HEADER_ARGS = [
    {"id": 1, "bitmap": 0x8180},
    {"id": 65535, "bitmap": 0, "q": 1, "a": 2, "auth": 3, "ar": 4},
    {"id": True, "bitmap": 0},
    {"id": 1, "bitmap": 0, "qr": 1, "rcode": 3},
    {"id": 1, "bitmap": None, "rd": 0},
    {"id": 65536, "bitmap": 0},
    {"id": 1, "bitmap": -1},
    {"id": 1, "bitmap": 0, "q": "1"},
    {"id": 1, "bitmap": 0, "ar": 70000},
]


@pytest.mark.parametrize("kwargs", HEADER_ARGS, ids=[str(k) for k in HEADER_ARGS])
def test_header_init_stores_what_dnslib_stores(kwargs: dict[str, Any]) -> None:
    ours, theirs = object.__new__(DNSHeader), object.__new__(DNSHeader)
    try:
        dnslib_fields.ORIGINAL_HEADER_INIT(theirs, **kwargs)
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            DNSHeader.__init__(ours, **kwargs)
        return
    DNSHeader.__init__(ours, **kwargs)
    assert vars(ours) == vars(theirs)


def test_header_init_without_an_id_still_draws_one() -> None:
    assert {DNSHeader().id for _ in range(50)} != {0}


@pytest.mark.parametrize("count", [0, 1, 3, 65535, 65536])
def test_set_header_qa_counts_as_dnslib_does(count: int) -> None:
    ours, theirs = DNSRecord(DNSHeader(id=1, bitmap=0)), DNSRecord(DNSHeader(id=1, bitmap=0))
    for msg in (ours, theirs):
        msg.rr = [None] * count
        msg.ar = [None] * 2
    try:
        dnslib_fields.ORIGINAL_SET_HEADER_QA(theirs)
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            ours.set_header_qa()
        return
    ours.set_header_qa()
    assert vars(ours.header) == vars(theirs.header)
