"""The replaced dnslib field accessors behave exactly as dnslib's own."""

from __future__ import annotations

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
