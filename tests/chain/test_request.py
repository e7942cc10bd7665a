"""Request's text form of the question: master-file escapes, one text per wire name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterdns.chain.request import BACKSLASHED, Request, name_text, text_labels
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.names import match_zone
from tests.dnstest import LOCAL, REMOTE


def request_for(labels: tuple[bytes, ...], qtype: str = "A") -> Request:
    """A request whose question holds exactly these label bytes."""
    q = DNSRecord(
        DNSHeader(id=1, rd=1), q=DNSQuestion(DNSLabel(labels), int(getattr(QTYPE, qtype)))
    )
    wire = bytes(q.pack())
    return Request(parse_message(wire), wire, proto="udp", remote=REMOTE, local=LOCAL)


@dataclass(frozen=True, kw_only=True)
class TextCase:
    labels: tuple[bytes, ...]
    text: str

    def id(self) -> str:
        return self.text


TEXT = [
    TextCase(labels=(), text="."),
    TextCase(
        labels=(b"web", b"apps", b"svc", b"cluster", b"local"), text="web.apps.svc.cluster.local."
    ),
    TextCase(labels=(b"Web", b"Example", b"ORG"), text="Web.Example.ORG."),
    TextCase(labels=(b"_http", b"_tcp", b"a-b", b"*"), text="_http._tcp.a-b.*."),
    # A dot or backslash inside a label: escaped, so the label count stays readable.
    TextCase(labels=(b"api.prod.svc.cluster.local",), text="api\\.prod\\.svc\\.cluster\\.local."),
    TextCase(labels=(b"a\\b", b"org"), text="a\\\\b.org."),
    TextCase(labels=(b"a\\", b"org"), text="a\\\\.org."),
    # The other zone-file specials get a backslash too, as miekg/dns writes them (BACKSLASHED).
    TextCase(
        labels=(b"a b", b"@", b";", b"(x)", b'"', b"'"), text="a\\ b.\\@.\\;.\\(x\\).\\\".\\'."
    ),
    TextCase(labels=(b"a@b", b"c;d"), text="a\\@b.c\\;d."),
    # Bytes outside 0x20-0x7e: three decimal digits.
    TextCase(labels=(b"\xff\xfe", b"example", b"org"), text="\\255\\254.example.org."),
    TextCase(labels=(b"\x00\x1f\x7f\x80",), text="\\000\\031\\127\\128."),
    TextCase(labels=(b"x\x84", b"net"), text="x\\132.net."),
]


@pytest.mark.parametrize("case", TEXT, ids=TextCase.id)
def test_name_text_escapes_as_miekg(case: TextCase) -> None:
    assert name_text(case.labels) == case.text


@pytest.mark.parametrize("case", TEXT, ids=TextCase.id)
def test_request_qname_and_name_are_the_escaped_text(case: TextCase) -> None:
    req = request_for(case.labels)
    assert req.qname == case.text
    assert req.name == case.text.lower()
    assert tuple(bytes(x) for x in req.owner.label) == case.labels


@pytest.mark.parametrize("case", TEXT, ids=TextCase.id)
def test_the_text_reads_back_into_the_same_bytes(case: TextCase) -> None:
    assert text_labels(case.text) == case.labels


def test_every_byte_round_trips() -> None:
    labels = (bytes(range(0, 63)), bytes(range(63, 126)), bytes(range(126, 189)))
    assert text_labels(name_text(labels)) == labels
    assert text_labels(name_text((bytes(range(189, 252)),))) == (bytes(range(189, 252)),)


def test_a_label_holding_dots_is_not_under_the_zone_its_text_would_name() -> None:
    one_label = request_for((b"api.prod.svc.cluster.local",))
    assert match_zone(one_label.name, ["cluster.local."]) is None
    five = request_for((b"api", b"prod", b"svc", b"cluster", b"local"))
    assert match_zone(five.name, ["cluster.local."]) == "cluster.local."
    assert one_label.name != five.name


def test_no_question_reads_as_the_root() -> None:
    msg = DNSRecord(DNSHeader(id=1))
    wire = bytes(msg.pack())
    req = Request(parse_message(wire), wire, proto="udp", remote=REMOTE, local=LOCAL)
    assert (req.qname, req.name, req.owner.label) == (".", ".", ())


ordinary = st.binary(min_size=1, max_size=20).filter(lambda b: not set(b) & set(BACKSLASHED))


@settings(max_examples=300, deadline=None)
@given(labels=st.lists(ordinary, max_size=5).map(tuple))
def test_the_text_is_dnslibs_for_labels_without_a_backslashed_byte(
    labels: tuple[bytes, ...],
) -> None:
    """dnslib's `str(DNSLabel)` differs only for the bytes miekg/dns writes with a backslash.

    (Nothing compares names with dnslib's text any more: `forward` and `cache` use `name_text`.)
    """
    assert name_text(labels) == str(DNSLabel(labels))


@settings(max_examples=300, deadline=None)
@given(labels=st.lists(st.binary(min_size=1, max_size=40), max_size=5).map(tuple))
def test_any_labels_round_trip(labels: tuple[bytes, ...]) -> None:
    text = name_text(labels)
    assert text.isascii() and text_labels(text) == labels
