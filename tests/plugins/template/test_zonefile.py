from __future__ import annotations

import pytest
from dnslib import RR, DNSLabel

from clusterdns.plugins.template.zonefile import RRError, name_labels, parse_rr, parse_ttl


def text(rr: RR) -> str:
    return " ".join(str(rr).split())


# (record text as a template produces it, the record read back as dnslib prints it)
RECORDS = [
    (
        "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)",
        "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60",
    ),
    # Parentheses across lines, comments, relative names made absolute.
    (
        "example.org. 60 IN SOA ns.example.org hostmaster (\n  1 ; serial\n  2 3 4 5 )",
        "example.org. 60 IN SOA ns.example.org. hostmaster. 1 2 3 4 5",
    ),
    # No TTL: 3600; no class: IN; either order; BIND TTL units; case-insensitive keywords.
    ("a.example.org. A 10.0.0.1", "a.example.org. 3600 IN A 10.0.0.1"),
    ("a.example.org. IN 30 A 10.0.0.1", "a.example.org. 30 IN A 10.0.0.1"),
    ("a.example.org. 1h30m in a 10.0.0.1", "a.example.org. 5400 IN A 10.0.0.1"),
    ("a.example.org. 30 CH TXT hello", 'a.example.org. 30 CH TXT "hello"'),
    # Only the first record counts.
    ("a. 60 IN A 10.0.0.1\nb. 60 IN A 10.0.0.2", "a. 60 IN A 10.0.0.1"),
    ("\n\na. 60 IN A 10.0.0.1", "a. 60 IN A 10.0.0.1"),
    # Letter case of names is kept.
    (
        "Foo.Example.ORG. 60 IN CNAME Bar.Example.ORG.",
        "Foo.Example.ORG. 60 IN CNAME Bar.Example.ORG.",
    ),
    ('a. 60 IN TXT "x y" "z;w"', 'a. 60 IN TXT "x y" "z;w"'),
    ("a. 60 IN MX 10 mail", "a. 60 IN MX 10 mail."),
    ("a. 60 IN AAAA 2001:db8::1", "a. 60 IN AAAA 2001:db8::1"),
    ("_x._tcp.a. 60 IN SRV 0 100 80 t.a.", "_x._tcp.a. 60 IN SRV 0 100 80 t.a."),
    (
        "2.1.0.10.in-addr.arpa. 60 IN PTR ip.example.org.",
        "2.1.0.10.in-addr.arpa. 60 IN PTR ip.example.org.",
    ),
    ("@ 60 IN NS ns.example.org.", ". 60 IN NS ns.example.org."),
]


@pytest.mark.parametrize("record,want", RECORDS, ids=[r[0] for r in RECORDS])
def test_reads_records_like_miekg_new_rr(record: str, want: str) -> None:
    assert text(parse_rr(record)) == want


def test_escaped_quote_in_txt() -> None:
    assert parse_rr('a. 60 IN TXT "q\\"t" x').rdata.data == [b'q"t', b"x"]


def test_class_numbers_beyond_dnslib() -> None:
    rr = parse_rr("a. 60 HS A 10.0.0.1")
    assert (rr.rclass, rr.ttl) == (4, 60)
    assert parse_rr("a. 60 CLASS254 A 10.0.0.1").rclass == 254


ERRORS = [
    ("", "no resource record"),
    ("; only a comment", "no resource record"),
    ("a.", "missing record type"),
    ("a. 60 IN", "missing record type"),
    ("a. 60 IN BOGUS 1", "unknown RR type BOGUS"),
    (
        "a. 60 IN A 10.0.0",
        "bad A record: Attribute 'data' must be tuple with 4 elements [(10, 0, 0)]",
    ),
    ("a. 60 IN A 10.0.0.1 b.", "garbage after rdata: b."),
    ("a. 60 IN A <no value>", "garbage after rdata: value>"),
    ("a. 60 IN SOA a. b. 1 2 3 4", "bad SOA data: expected 7 fields, got 6"),
    ("a. 60 IN SOA a. b. (1 2 3 4 5", "unbalanced brace"),
    ("a. 60 IN SOA a. b. 1 2 3 4 5)", "extra closing brace"),
    ('a. 60 IN TXT "x', "unclosed quote"),
    ("a. 9999999999 IN A 10.0.0.1", "bad TTL 9999999999"),
]


@pytest.mark.parametrize("record,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_rejects_what_is_not_one_record(record: str, message: str) -> None:
    with pytest.raises(RRError) as exc:
        parse_rr(record)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "value,want",
    [
        ("0", 0),
        ("60", 60),
        ("1m", 60),
        ("2h", 7200),
        ("1d1s", 86401),
        ("1W", 604800),
        ("x", None),
        ("IN", None),
    ],
)
def test_ttl(value: str, want: int | None) -> None:
    assert parse_ttl(value) == want


# -- names: read with the master-file escapes, byte for byte ---------------------------------
NAMES = [
    ("example.org.", (b"example", b"org")),
    ("example.org", (b"example", b"org")),  # relative: taken as absolute
    (".", ()),
    ("@", ()),
    ("Foo.Example.ORG.", (b"Foo", b"Example", b"ORG")),
    ("a\\.b.example.", (b"a.b", b"example")),
    ("a\\\\b.example.", (b"a\\b", b"example")),
    ("a\\\\.example.", (b"a\\", b"example")),
    ("\\255\\254.example.org.", (b"\xff\xfe", b"example", b"org")),
    ("\\000x\\032.", (b"\x00x ",)),
    ("a\\ b.\\@\\;\\(\\)\\\"\\'.", (b"a b", b"@;()\"'")),
    ("caf\u00e9.example.", (b"caf\xc3\xa9", b"example")),  # UTF-8 bytes, not IDNA
]


@pytest.mark.parametrize("text,labels", NAMES, ids=[n[0] for n in NAMES])
def test_name_labels(text: str, labels: tuple[bytes, ...]) -> None:
    assert name_labels(text) == labels


NAME_ERRORS = [
    ("a..b.", "bad name 'a..b.': empty label"),
    (".a.", "bad name '.a.': empty label"),
    ("a\\", "bad name 'a\\\\': a backslash ends it"),
    ("\\256.", "bad name '\\\\256.': escape \\256 is over 255"),
    ("x" * 64 + ".", f"bad name '{'x' * 64}.': a label is over 63 octets"),
    ("a." * 128, f"bad name '{'a.' * 128}': over 255 octets"),
]


@pytest.mark.parametrize("text,message", NAME_ERRORS, ids=[n[0][:20] for n in NAME_ERRORS])
def test_name_errors(text: str, message: str) -> None:
    with pytest.raises(RRError) as exc:
        name_labels(text)
    assert str(exc.value) == message


def labels_of(name: DNSLabel) -> tuple[bytes, ...]:
    return tuple(bytes(x) for x in name.label)


def test_owner_and_data_names_keep_escaped_bytes() -> None:
    rr = parse_rr("a\\.b.\\255.example. 60 IN CNAME x\\.y.\\000.example.")
    assert labels_of(rr.rname) == (b"a.b", b"\xff", b"example")
    assert labels_of(rr.rdata.label) == (b"x.y", b"\x00", b"example")
    mx = parse_rr("a. 60 IN MX 10 m\\.x.example.")
    assert (mx.rdata.preference, labels_of(mx.rdata.label)) == (10, (b"m.x", b"example"))
    srv = parse_rr("_x._tcp.a. 60 IN SRV 0 5 80 t\\;1.a.")
    assert (srv.rdata.port, labels_of(srv.rdata.target)) == (80, (b"t;1", b"a"))
    soa = parse_rr("a. 60 IN SOA n\\.s.a. h\\@x.a. 1 2 3 4 5")
    assert labels_of(soa.rdata.mname) == (b"n.s", b"a")
    assert labels_of(soa.rdata.rname) == (b"h@x", b"a")
    assert labels_of(parse_rr("a. 60 IN NS @").rdata.label) == ()
    assert labels_of(parse_rr("a. 60 IN PTR p\\032q.").rdata.label) == (b"p q",)
