from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from clusterdns.chain.build import build
from clusterdns.chain.order import DIRECTIVES, ORDER
from clusterdns.chain.request import Request
from clusterdns.chain.setup import BlockSettings, PluginSpec, SetupContext
from clusterdns.corefile import parse as parse_corefile
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.codec import parse_message
from clusterdns.dnsutil.fallthrough import NEVER, Fallthrough
from clusterdns.dnsutil.zones import parse_key
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.plugins import SETUP
from clusterdns.plugins import template as template_plugin
from clusterdns.plugins.template import NAME, SPEC, Template, TemplateConfig
from clusterdns.plugins.template.config import MATCH_ALL, ExtendedError, Rule
from clusterdns.plugins.template.expansion import parse_template
from clusterdns.plugins.template.handler import metrics_for
from clusterdns.plugins.template.regex import compile_re2
from tests.dnstest import (
    LOCAL,
    REMOTE,
    Case,
    RecordingWriter,
    build_config,
    first_block,
    new_process,
    rrs,
    serve,
)

SERVER = "dns://:53"


def request(
    qname: str, qtype: str = "A", qclass: str = "IN", *, remote: tuple[str, int] = REMOTE
) -> Request:
    """A query of any class (tests.dnstest.make_request only builds IN queries)."""
    dnslib_class = "*" if qclass == "ANY" else qclass
    wire = DNSRecord.question(qname, qtype, dnslib_class).pack()
    return Request(
        DNSRecord.parse(wire), wire, proto="udp", remote=remote, local=LOCAL, server=SERVER
    )


def rule(
    qclass: str,
    qtype: str,
    zones: tuple[str, ...],
    *,
    match: tuple[str, ...] = (),
    answer: tuple[str, ...] = (),
    additional: tuple[str, ...] = (),
    authority: tuple[str, ...] = (),
    rcode: int = rc.NOERROR,
    ederror: ExtendedError | None = None,
    fall: Fallthrough = NEVER,
) -> Rule:
    """The Rule a template line should parse into, written the short way."""
    numbers = {"ANY": 255, "IN": 1, "CH": 3, "A": 1, "AAAA": 28, "PTR": 12, "TXT": 16, "MX": 15}
    return Rule(
        qclass=numbers[qclass],
        qtype=numbers[qtype],
        class_name=qclass,
        type_name=qtype,
        zones=zones,
        regexes=tuple(compile_re2(m) for m in match) or (MATCH_ALL,),
        answer=tuple(parse_template(t) for t in answer),
        additional=tuple(parse_template(t) for t in additional),
        authority=tuple(parse_template(t) for t in authority),
        rcode=rcode,
        ederror=ederror,
        fall=fall,
    )


# -- setup -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    want: TemplateConfig | str
    """The parsed config, or the exact error message."""

    def id(self) -> str:
        return self.corefile.replace("\n", " ")[:70]


SOA_INVALID = "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"

SETUP_CASES = [
    SetupCase(
        corefile=". {\n    template ANY ANY {\n        rcode NXDOMAIN\n    }\n}\n",
        want=TemplateConfig(rules=(rule("ANY", "ANY", (".",), rcode=rc.NXDOMAIN),)),
    ),
    # The spec's example: a zone argument, an rcode and a parenthesised SOA authority.
    SetupCase(
        corefile=(
            ". {\n    template ANY ANY invalid {\n        rcode NXDOMAIN\n"
            f'        authority "{SOA_INVALID}"\n    }}\n}}\n'
        ),
        want=TemplateConfig(
            rules=(rule("ANY", "ANY", ("invalid.",), rcode=rc.NXDOMAIN, authority=(SOA_INVALID,)),)
        ),
    ),
    # No ZONES: the block's keys, CIDR keys expanded; no block at all is a valid rule too.
    SetupCase(
        corefile="example.org 10.0.0.0/23 {\n    template IN A\n}\n",
        want=TemplateConfig(
            rules=(
                rule(
                    "IN",
                    "A",
                    ("example.org.", "0.0.10.in-addr.arpa.", "1.0.10.in-addr.arpa."),
                ),
            )
        ),
    ),
    # ZONES are normalised like keys; every option, several arguments per option.
    SetupCase(
        corefile=""". {
    template IN A Example.ORG 10.1.0.0/16 {
        match ^a[.] "^(?P<host>b)[.]"
        match ^c[.]
        answer "{{ .Name }} 60 IN A 10.0.0.1" "{{ .Name }} 60 IN A 10.0.0.2"
        additional "ns.example.org. 60 IN A 10.0.0.53"
        authority "example.org. 60 IN NS ns.example.org."
        rcode NOERROR
        ederror 15 "Blocked"
        fallthrough example.org
        upstream 8.8.8.8
    }
}
""",
        want=TemplateConfig(
            rules=(
                rule(
                    "IN",
                    "A",
                    ("example.org.", "1.10.in-addr.arpa."),
                    match=("^a[.]", "^(?P<host>b)[.]", "^c[.]"),
                    answer=("{{ .Name }} 60 IN A 10.0.0.1", "{{ .Name }} 60 IN A 10.0.0.2"),
                    additional=("ns.example.org. 60 IN A 10.0.0.53",),
                    authority=("example.org. 60 IN NS ns.example.org.",),
                    ederror=ExtendedError(code=15, reason="Blocked"),
                    fall=Fallthrough(("example.org.",)),
                ),
            )
        ),
    ),
    # Several lines: one handler, rules in the order written; `upstream` without arguments.
    SetupCase(
        corefile="""example.org {
    template IN MX {
        answer "{{ .Name }} 60 IN MX 10 mail.example.org."
        fallthrough
        upstream
    }
    template CH TXT {
        rcode REFUSED
    }
}
""",
        want=TemplateConfig(
            rules=(
                rule(
                    "IN",
                    "MX",
                    ("example.org.",),
                    answer=("{{ .Name }} 60 IN MX 10 mail.example.org.",),
                    fall=Fallthrough((".",)),
                ),
                rule("CH", "TXT", ("example.org.",), rcode=rc.REFUSED),
            )
        ),
    ),
    # `{{$X}}` is read as the environment variable X by the Corefile parser (spec §3.4), as in
    # CoreDNS: an unset variable leaves `{}`.
    SetupCase(
        corefile=(
            ". {\n    template IN A {\n"
            '        answer "{{$CLUSTERDNS_TEMPLATE_TEST_UNSET}}. 60 IN A 10.0.0.1"\n    }\n}\n'
        ),
        want=TemplateConfig(rules=(rule("IN", "A", (".",), answer=("{}. 60 IN A 10.0.0.1",)),)),
    ),
    # -- errors: each names the file, the line and the plugin.
    SetupCase(
        corefile=". {\n    template\n}\n",
        want="Corefile:2: template: expected at least 2 arguments, got 0",
    ),
    SetupCase(
        corefile=". {\n    template IN\n}\n",
        want="Corefile:2: template: expected at least 2 arguments, got 1",
    ),
    SetupCase(
        corefile=". {\n    template FOO A\n}\n",
        want="Corefile:2: template: invalid query class FOO",
    ),
    # Class and type names are case-sensitive, as in CoreDNS.
    SetupCase(
        corefile=". {\n    template in A\n}\n",
        want="Corefile:2: template: invalid query class in",
    ),
    SetupCase(
        corefile=". {\n    template IN BOGUS\n}\n",
        want="Corefile:2: template: invalid query type BOGUS",
    ),
    SetupCase(
        corefile=". {\n    template IN A foo..example.org\n}\n",
        want="Corefile:2: template: zone is not a valid domain name: foo..example.org",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        match\n    }\n}\n",
        want="Corefile:3: template: match: expected at least 1 argument, got 0",
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        match ^a "(?=b)"\n    }\n}\n',
        want=(
            "Corefile:3: template: could not parse regex: (?=b), "
            "invalid or unsupported Perl syntax: `(?=`"
        ),
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n\n        match a**\n    }\n}\n",
        want=(
            "Corefile:4: template: could not parse regex: a**, "
            "invalid nested repetition operator: `**`"
        ),
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        match (a\n    }\n}\n",
        want="Corefile:3: template: could not parse regex: (a, missing closing ): `(a`",
    ),
    SetupCase(
        corefile=f". {{\n    template IN A {{\n        match {'a' * 10001}\n    }}\n}}\n",
        want="Corefile:3: template: regex pattern too long: 10001 > 10000",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        answer\n    }\n}\n",
        want="Corefile:3: template: answer: expected at least 1 argument, got 0",
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        answer "{{ .Message }}"\n    }\n}\n',
        want=(
            "Corefile:3: template: answer: could not compile template '{{ .Message }}': "
            ".Message is not supported"
        ),
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        additional "{{ .Foo }}"\n    }\n}\n',
        want=(
            "Corefile:3: template: additional: could not compile template '{{ .Foo }}': "
            "unknown field .Foo (supported: .Class, .Group, .Match, .Name, .Regex, .Remote, "
            ".Type, .Zone)"
        ),
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        authority "{{ $x }}"\n    }\n}\n',
        want=(
            "Corefile:3: template: authority: could not compile template '{{ $x }}': "
            "variables ($x) are not supported"
        ),
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        answer "ok" "{{ .Name"\n    }\n}\n',
        want=(
            "Corefile:3: template: answer: could not compile template '{{ .Name': unclosed action"
        ),
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        answer "{{ if .Name }}x{{ end }}"\n    }\n}\n',
        want=(
            "Corefile:3: template: answer: could not compile template "
            "'{{ if .Name }}x{{ end }}': {{if}} is not supported"
        ),
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        answer "{{ parseInt .Name 16 }}"\n    }\n}\n',
        want=(
            "Corefile:3: template: answer: could not compile template "
            "'{{ parseInt .Name 16 }}': wrong number of args for parseInt: want 3 got 2"
        ),
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        rcode\n    }\n}\n",
        want="Corefile:3: template: rcode: expected exactly 1 argument, got 0",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        rcode BOGUS\n    }\n}\n",
        want="Corefile:3: template: unknown rcode BOGUS",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        rcode BADCOOKIE\n    }\n}\n",
        want="Corefile:3: template: rcode BADCOOKIE needs EDNS and is not supported",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        ederror 70000\n    }\n}\n",
        want="Corefile:3: template: error parsing extended DNS error code 70000",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        ederror 1 two three\n    }\n}\n",
        want="Corefile:3: template: ederror: expected 1 to 2 arguments, got 3",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        fallthrough foo..bar\n    }\n}\n",
        want=("Corefile:3: template: fallthrough: zone is not a valid domain name: foo..bar"),
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        var x "1"\n    }\n}\n',
        want="Corefile:3: template: var is not supported by clusterdns",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        expr true\n    }\n}\n",
        want="Corefile:3: template: expr is not supported by clusterdns",
    ),
    SetupCase(
        corefile=". {\n    template IN A {\n        answers x\n    }\n}\n",
        want="Corefile:3: template: unknown property 'answers'",
    ),
    SetupCase(
        corefile='. {\n    template IN A {\n        answer "x" {\n        }\n    }\n}\n',
        want="Corefile:3: template: answer takes no block",
    ),
    # The error names the second line, not the first.
    SetupCase(
        corefile=(
            ". {\n    template IN A {\n        rcode NXDOMAIN\n    }\n"
            "    template IN AAAA {\n        rcode NOPE\n    }\n}\n"
        ),
        want="Corefile:6: template: unknown rcode NOPE",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=SetupCase.id)
def test_setup(case: SetupCase) -> None:
    if isinstance(case.want, str):
        with pytest.raises(CorefileErrors) as exc:
            build_config(case.corefile)
        assert str(exc.value) == case.want
        return
    block = first_block(case.corefile)
    assert block.plugins == ("template",)
    assert isinstance(block.head, Template)
    assert block.head.config == case.want


def test_registered_and_ordered_before_whoami() -> None:
    assert SETUP[NAME] is SPEC
    assert not SPEC.once
    assert ORDER.index("template") < ORDER.index("whoami")


# -- answers ---------------------------------------------------------------------------------

INVALID = f""". {{
    template ANY ANY invalid {{
        rcode NXDOMAIN
        authority "{SOA_INVALID}"
    }}
    whoami
}}
"""

ADDRESSES = """. {
    template IN A example.org {
        match "^ip-10-0-(?P<c>[0-9]+)-(?P<d>[0-9]+)[.]example[.]org[.]$"
        answer "{{ .Name }} 60 IN A 10.0.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN PTR 10.0.0.0/16 {
        match "^(?P<d>[0-9]+)[.](?P<c>[0-9]+)[.]0[.]10[.]in-addr[.]arpa[.]$"
        answer "{{ .Name }} 60 IN PTR ip-10-0-{{ .Group.c }}-{{ .Group.d }}.example.org."
    }
    whoami
}
"""

# TXT strings make each value a template sees visible in the answer.
MATCH_TXT = (
    r"\"{{ index .Match 0 }}\" \"{{ index .Match 1 }}\" \"{{ .Group.num }}\" "
    r"\"{{ index .Group \"2\" }}\" \"{{ index .Match 4 }}\""
)
DATA_TXT = r"\"{{ .Zone }}\" \"{{ .Class }}\" \"{{ .Type }}\" \"{{ .Regex }}\" \"{{ len .Match }}\""
HEX_A = "10.0.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
DATA = (
    "example.org {\n"
    "    template IN TXT {\n"
    '        match "^([a-z]+)-(?P<num>[0-9]+)(-(x))?[.]"\n'
    '        answer "{{ .Name }} 60 IN TXT ' + MATCH_TXT + '"\n'
    '        answer "data.example.org. 60 IN TXT ' + DATA_TXT + '"\n'
    '        additional "remote.example.org. 0 IN TXT \\"{{ .Remote }}\\""\n'
    "    }\n"
    "    template IN ANY {\n"
    "        match ^hex-(?P<c>[0-9a-f]{2})(?P<d>[0-9a-f]{2})[.]\n"
    '        answer "{{ .Name }} 60 IN A ' + HEX_A + '"\n'
    "    }\n"
    "}\n"
)

ORDERED = """example.org {
    template IN A {
        match ^a[.]
        answer "{{ .Name }} 60 IN A 10.0.0.1"
        fallthrough
    }
    template IN A {
        match ^a[.] ^b[.]
        answer "{{ .Name }} 60 IN A 10.0.0.2"
        fallthrough
    }
    template ANY ANY {
        rcode NXDOMAIN
        authority "example.org. 30 IN SOA ns.example.org. hostmaster.example.org. 1 2 3 4 5"
    }
}
"""

FALLTHROUGH = """example.org {
    template IN A {
        match ^x[.]
        answer "{{ .Name }} 60 IN A 10.0.0.1"
        fallthrough sub.example.org
    }
    whoami
}
"""

WHOAMI_EXTRA = ("_udp.{name} 0 IN SRV 0 0 40212 .", "{name} 0 IN A 10.240.0.1")


def whoami(name: str) -> list[str]:
    return [r.format(name=name) for r in WHOAMI_EXTRA]


SOA_ORDERED = "example.org. 30 IN SOA ns.example.org. hostmaster.example.org. 1 2 3 4 5"
SOA_INVALID_IN = "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"

ANSWER_CASES: list[tuple[str, Case]] = [
    # The spec's example (§20), with the flags dig shows.
    (
        INVALID,
        Case(qname="foo.invalid.", rcode="NXDOMAIN", ns=[SOA_INVALID_IN], flags="qr aa rd"),
    ),
    (INVALID, Case(qname="Foo.INVALID.", qtype="MX", rcode="NXDOMAIN", ns=[SOA_INVALID_IN])),
    (INVALID, Case(qname="invalid.", qtype="SOA", rcode="NXDOMAIN", ns=[SOA_INVALID_IN])),
    # Outside the template's zones: the next plugin answers.
    (INVALID, Case(qname="example.org.", extra=whoami("example.org."), flags="qr aa rd")),
    # Named groups.
    (
        ADDRESSES,
        Case(
            qname="ip-10-0-1-2.example.org.",
            answer=["ip-10-0-1-2.example.org. 60 IN A 10.0.1.2"],
            flags="qr aa rd",
        ),
    ),
    # {{ .Name }} keeps the client's letter case; matching is on the lower-cased name.
    (
        ADDRESSES,
        Case(
            qname="IP-10-0-1-2.Example.ORG.",
            answer=["IP-10-0-1-2.Example.ORG. 60 IN A 10.0.1.2"],
        ),
    ),
    (
        ADDRESSES,
        Case(
            qname="2.1.0.10.in-addr.arpa.",
            qtype="PTR",
            answer=["2.1.0.10.in-addr.arpa. 60 IN PTR ip-10-0-1-2.example.org."],
        ),
    ),
    # No regex match, fallthrough: the PTR rule is for another zone, so whoami answers.
    (ADDRESSES, Case(qname="www.example.org.", extra=whoami("www.example.org."))),
    # A type no rule has: every rule is skipped, fallthrough or not.
    (
        ADDRESSES,
        Case(
            qname="ip-10-0-1-2.example.org.", qtype="AAAA", extra=whoami("ip-10-0-1-2.example.org.")
        ),
    ),
    (
        ADDRESSES,
        Case(qname="2.1.0.10.in-addr.arpa.", qtype="TXT", extra=whoami("2.1.0.10.in-addr.arpa.")),
    ),
    # Every piece of data a template sees; group 3 and 4 took no part, so they are empty.
    (
        DATA,
        Case(
            qname="Host-42.Example.Org.",
            qtype="TXT",
            answer=[
                'Host-42.Example.Org. 60 IN TXT "host-42." "host" "42" "42" ""',
                'data.example.org. 60 IN TXT "example.org." "IN" "TXT" '
                '"^([a-z]+)-(?P<num>[0-9]+)(-(x))?[.]" "5"',
            ],
            extra=['remote.example.org. 0 IN TXT "10.240.0.1"'],
            flags="qr aa rd",
        ),
    ),
    (
        DATA,
        Case(
            qname="host-42-x.example.org.",
            qtype="TXT",
            answer=[
                'host-42-x.example.org. 60 IN TXT "host-42-x." "host" "42" "42" "x"',
                'data.example.org. 60 IN TXT "example.org." "IN" "TXT" '
                '"^([a-z]+)-(?P<num>[0-9]+)(-(x))?[.]" "5"',
            ],
            extra=['remote.example.org. 0 IN TXT "10.240.0.1"'],
        ),
    ),
    # parseInt, and a rule of type ANY answering an A query.
    (
        DATA,
        Case(qname="hex-01ff.example.org.", answer=["hex-01ff.example.org. 60 IN A 10.0.1.255"]),
    ),
    # A query of type ANY fits a rule of type TXT; .Type is then the rule's type.
    (
        DATA,
        Case(
            qname="a-1.example.org.",
            qtype="ANY",
            answer=[
                'a-1.example.org. 60 IN TXT "a-1." "a" "1" "1" ""',
                'data.example.org. 60 IN TXT "example.org." "IN" "TXT" '
                '"^([a-z]+)-(?P<num>[0-9]+)(-(x))?[.]" "5"',
            ],
            extra=['remote.example.org. 0 IN TXT "10.240.0.1"'],
        ),
    ),
    # Several lines, tried in the order written: the first matching rule wins.
    (ORDERED, Case(qname="a.example.org.", answer=["a.example.org. 60 IN A 10.0.0.1"])),
    (ORDERED, Case(qname="b.example.org.", answer=["b.example.org. 60 IN A 10.0.0.2"])),
    (ORDERED, Case(qname="c.example.org.", rcode="NXDOMAIN", ns=[SOA_ORDERED])),
    # A type mismatch skips the first two rules even though their regexes would match.
    (ORDERED, Case(qname="a.example.org.", qtype="TXT", rcode="NXDOMAIN", ns=[SOA_ORDERED])),
    # fallthrough ZONES: names inside them go on to the next plugin.
    (FALLTHROUGH, Case(qname="x.example.org.", answer=["x.example.org. 60 IN A 10.0.0.1"])),
    (FALLTHROUGH, Case(qname="y.sub.example.org.", extra=whoami("y.sub.example.org."))),
]


@pytest.mark.parametrize("corefile,case", ANSWER_CASES, ids=[c.id() for _, c in ANSWER_CASES])
async def test_answers(corefile: str, case: Case) -> None:
    code, w = await serve(first_block(corefile), case.request())
    assert w.written
    assert code == rc.RCODES_BY_NAME[case.rcode]
    case.check(w.reply())


@dataclass(frozen=True, kw_only=True)
class FailCase:
    corefile: str
    qname: str
    qtype: str = "A"

    def id(self) -> str:
        return f"{self.qname} {self.qtype}"


SERVFAIL_CASES = [
    # No regex matches and no fallthrough: SERVFAIL for the server to write.
    FailCase(corefile=ADDRESSES, qname="foo.0.10.in-addr.arpa.", qtype="PTR"),
    # fallthrough covers only sub.example.org.
    FailCase(corefile=FALLTHROUGH, qname="y.example.org."),
    # rcode SERVFAIL: matched, but nothing is written.
    FailCase(
        corefile=(
            "example.org {\n    template IN A {\n        rcode SERVFAIL\n    }\n    whoami\n}\n"
        ),
        qname="a.example.org.",
    ),
]


@pytest.mark.parametrize("case", SERVFAIL_CASES, ids=FailCase.id)
async def test_servfail_without_writing(case: FailCase) -> None:
    code, w = await serve(first_block(case.corefile), request(case.qname, case.qtype))
    assert code == rc.SERVFAIL
    assert not w.written
    assert w.sent == []


async def test_remote_is_the_client_address() -> None:
    corefile = (
        "example.org {\n    template IN TXT {\n"
        '        answer "{{ .Name }} 0 IN TXT \\"{{ .Remote }}\\""\n    }\n}\n'
    )
    block = first_block(corefile)
    for ip in ("10.240.0.1", "2001:db8::53"):
        _, w = await serve(block, request("me.example.org.", "TXT", remote=(ip, 5353)))
        Case(
            qname="me.example.org.", qtype="TXT", answer=[f'me.example.org. 0 IN TXT "{ip}"']
        ).check(w.reply())


CLASSES = """example.org {
    template CH TXT {
        answer "{{ .Name }} 0 {{ .Class }} TXT \\"{{ .Class }}\\" \\"{{ .Type }}\\""
    }
    template IN TXT {
        answer "{{ .Name }} 0 {{ .Class }} TXT \\"{{ .Class }}\\" \\"{{ .Type }}\\""
    }
}
"""


@pytest.mark.parametrize(
    "qclass,want",
    [
        ("IN", 'a.example.org. 0 IN TXT "IN" "TXT"'),
        ("CH", 'a.example.org. 0 CH TXT "CH" "TXT"'),
        # A query of class ANY fits the first rule; .Class is then the rule's class.
        ("ANY", 'a.example.org. 0 CH TXT "CH" "TXT"'),
    ],
)
async def test_class_match(qclass: str, want: str) -> None:
    _, w = await serve(first_block(CLASSES), request("a.example.org.", "TXT", qclass))
    msg = w.reply()
    assert msg is not None
    assert [str(r) for r in msg.rr] == rrs(want)


async def test_class_mismatch_passes_on() -> None:
    corefile = (
        'example.org {\n    template CH TXT {\n        answer "x. 0 CH TXT x"\n    }\n'
        "    whoami\n}\n"
    )
    _, w = await serve(first_block(corefile), request("a.example.org.", "TXT"))
    Case(qname="a.example.org.", qtype="TXT", extra=whoami("a.example.org.")).check(w.reply())


async def test_ederror_adds_an_opt_record() -> None:
    corefile = (
        "example.org {\n    template ANY ANY {\n        rcode REFUSED\n"
        '        ederror 15 "Blocked"\n    }\n}\n'
    )
    code, w = await serve(first_block(corefile), request("a.example.org."))
    assert code == rc.REFUSED
    assert w.written
    msg = w.reply()
    assert msg is not None
    assert rc.rcode_name(msg.header.rcode) == "REFUSED"
    opts = [r for r in msg.ar if r.rtype == rc.OPT]
    assert len(opts) == 1
    assert [(o.code, bytes(o.data)) for o in opts[0].rdata] == [(15, b"\x00\x0fBlocked")]


async def test_no_next_plugin_is_a_plugin_error() -> None:
    corefile = (
        "example.org {\n    template IN A {\n        match ^x[.]\n        fallthrough\n    }\n}\n"
    )
    req = request("y.example.org.")
    with pytest.raises(PluginError, match=r"^plugin/template: no next plugin found$"):
        await serve(first_block(corefile), req)


# -- failures and metrics --------------------------------------------------------------------

FAILING = """example.org {
    template IN A {
        match ^(bad)[.]
        answer "{{ .Name }} 60 IN A 10.0.0.1"
        additional "{{ index .Match 5 }}.example.org. 60 IN A 10.0.0.2"
    }
    template IN AAAA {
        answer "{{ .Name }} 60 IN AAAA 10.0.0.1"
    }
    template IN TXT {
        answer "{{ .Name }} 60 IN TXT ok"
    }
}
"""


async def test_template_failure_is_servfail_and_counted() -> None:
    config = build_config(FAILING)
    block = config.blocks[0]
    req = request("Bad.example.org.")
    w = RecordingWriter(req)
    assert block.head is not None
    with pytest.raises(PluginError) as exc:
        await block.head.serve(req, w)
    assert exc.value.rcode == rc.SERVFAIL
    assert str(exc.value) == (
        "plugin/template: additional template '{{index .Match 5}}.example.org. 60 IN A "
        "10.0.0.2': error calling index: index out of range: 5"
    )
    assert not w.written
    m = metrics_for(config.process.metrics)
    template = "{{index .Match 5}}.example.org. 60 IN A 10.0.0.2"
    labels = (SERVER, "example.org.", "", "IN", "A", "additional", template)
    assert m.template_failures.values == {labels: 1}
    assert m.rr_failures.values == {}
    assert m.matches.values == {(SERVER, "example.org.", "", "IN", "A"): 1}


async def test_unparsable_rr_is_servfail_and_counted() -> None:
    config = build_config(FAILING)
    head = config.blocks[0].head
    assert head is not None
    for _ in range(2):
        req = request("v6.example.org.", "AAAA")
        w = RecordingWriter(req)
        with pytest.raises(
            PluginError, match=r"gave '[Vv]6\.example\.org\. 60 IN AAAA 10\.0\.0\.1'"
        ) as exc:
            await head.serve(req, w)
        assert exc.value.rcode == rc.SERVFAIL
        assert not w.written
    m = metrics_for(config.process.metrics)
    labels = (SERVER, "example.org.", "", "IN", "AAAA", "answer", "{{.Name}} 60 IN AAAA 10.0.0.1")
    assert m.rr_failures.values == {labels: 2}
    assert m.template_failures.values == {}
    # dnslib reads `TXT ok` fine: one match, no failure.
    _, w = await serve(config.blocks[0], request("t.example.org.", "TXT"))
    assert w.written
    assert m.matches.values == {
        (SERVER, "example.org.", "", "IN", "AAAA"): 2,
        (SERVER, "example.org.", "", "IN", "TXT"): 1,
    }


async def test_matches_are_counted_and_exported_once_per_registry() -> None:
    corefile = INVALID + (
        "\nexample.org {\n    template IN A {\n        rcode NXDOMAIN\n    }\n    whoami\n}\n"
    )
    config = build_config(corefile)
    root, other = config.blocks
    for name in ("a.invalid.", "b.invalid.", "example.org."):
        await serve(root, request(name, "TXT"))
    await serve(other, request("x.example.org."))
    await serve(other, request("x.example.org.", "TXT"))  # type mismatch: not a match
    m = metrics_for(config.process.metrics)
    assert m.matches.values == {
        (SERVER, "invalid.", "", "IN", "TXT"): 2,
        (SERVER, "example.org.", "", "IN", "A"): 1,
    }
    text = config.process.metrics.exposition().decode()
    assert text.count("# TYPE coredns_template_matches_total counter") == 1
    assert (
        'coredns_template_matches_total{class="IN",server="dns://:53",type="TXT",view="",'
        'zone="invalid."} 2.0'
    ) in text
    assert "# TYPE coredns_template_template_failures_total counter" in text
    assert "# TYPE coredns_template_rr_failures_total counter" in text


# -- README ----------------------------------------------------------------------------------


def examples(doc: str) -> list[str]:
    return re.findall(r"~~~ corefile\n(.*?)~~~", doc, flags=re.S)


def test_readme_sections() -> None:
    doc = template_plugin.__doc__
    assert doc is not None
    for section in (
        "# template",
        "## Name",
        "## Description",
        "## Syntax",
        "## Examples",
        "## Metrics",
        "## Bugs",
    ):
        assert f"\n{section}\n" in f"\n{doc}"


def test_readme_examples_parse_and_set_up() -> None:
    doc = template_plugin.__doc__
    assert doc is not None
    corefiles = examples(doc)
    assert len(corefiles) == 6
    for text in corefiles:
        blocks = parse_corefile(text, "Corefile", DIRECTIVES)
        assert blocks
        for index, sb in enumerate(blocks):
            lines = sb.lines_of(NAME)
            assert lines, text
            keys = tuple(k for t in sb.keys for k in parse_key(t.text, 53))
            names = tuple(d.name for d in sb.directives)
            ctx = SetupContext(BlockSettings(index, keys, sb.file, sb.line, names), new_process())
            factory = SPEC.setup(lines, ctx)
            assert factory is not None
            handler = factory(None)
            assert isinstance(handler, Template)
            assert len(handler.config.rules) == len(lines)


async def test_readme_examples_answer_as_documented() -> None:
    """Set up each example with every other plugin stubbed out; check the answers documented."""
    doc = template_plugin.__doc__
    assert doc is not None
    corefiles = examples(doc)
    specs = {name: PluginSpec(name, lambda lines, ctx: None) for name in ORDER}
    specs[NAME] = SPEC

    def block(text: str) -> Template:
        config = build(
            parse_corefile(text, "Corefile", DIRECTIVES),
            specs=specs,
            dns_port=53,
            process=new_process(),
        )
        head = config.blocks[0].head
        assert isinstance(head, Template)
        return head

    async def ask(head: Template, qname: str, qtype: str = "A") -> DNSRecord:
        req = request(qname, qtype)
        w = RecordingWriter(req)
        await head.serve(req, w)
        msg = w.reply()
        assert msg is not None
        return msg

    everything, invalid, junk, addresses, hexa, misc = (block(t) for t in corefiles)
    Case(qname="www.example.org.", rcode="NXDOMAIN").check(
        await ask(everything, "www.example.org.")
    )
    Case(qname="foo.invalid.", rcode="NXDOMAIN", ns=[SOA_INVALID_IN], flags="qr aa rd").check(
        await ask(invalid, "foo.invalid.")
    )
    Case(
        qname="kubernetes.default.svc.cluster.local.example.org.",
        rcode="NXDOMAIN",
        ns=["example.org. 60 IN SOA ns.example.org. hostmaster.example.org. 1 60 60 60 60"],
    ).check(await ask(junk, "kubernetes.default.svc.cluster.local.example.org."))
    Case(
        qname="ip-10-0-1-2.example.org.", answer=["ip-10-0-1-2.example.org. 60 IN A 10.0.1.2"]
    ).check(await ask(addresses, "ip-10-0-1-2.example.org."))
    Case(
        qname="2.1.0.10.in-addr.arpa.",
        qtype="PTR",
        answer=["2.1.0.10.in-addr.arpa. 60 IN PTR ip-10-0-1-2.example.org."],
    ).check(await ask(addresses, "2.1.0.10.in-addr.arpa.", "PTR"))
    Case(
        qname="ip-0a0001ff.example.org.", answer=["ip-0a0001ff.example.org. 60 IN A 10.0.1.255"]
    ).check(await ask(hexa, "ip-0a0001ff.example.org."))
    Case(
        qname="mail2.example.org.",
        qtype="MX",
        answer=["mail2.example.org. 60 IN MX 10 mail2.example.org."],
        extra=["mail2.example.org. 60 IN A 192.0.2.25"],
    ).check(await ask(hexa, "mail2.example.org.", "MX"))
    Case(
        qname="whoami.example.org.",
        qtype="TXT",
        answer=['whoami.example.org. 0 IN TXT "10.240.0.1"'],
    ).check(await ask(misc, "whoami.example.org.", "TXT"))
    blocked = await ask(misc, "blocked.example.org.")
    Case(qname="blocked.example.org.", rcode="REFUSED").check(blocked)
    opt = [r for r in blocked.ar if r.rtype == rc.OPT]
    assert [(o.code, bytes(o.data)) for o in opt[0].rdata] == [(15, b"\x00\x0fblocked by policy")]


# -- `.Name` is the escaped text; owners keep the question's bytes ------------------------------
def odd_request(labels: tuple[bytes, ...], qtype: str = "A") -> Request:
    """A request whose question holds exactly these label bytes."""
    header = DNSHeader(id=1, rd=1)
    q = DNSRecord(header, q=DNSQuestion(DNSLabel(labels), int(getattr(QTYPE, qtype))))
    wire = bytes(q.pack())
    return Request(parse_message(wire), wire, proto="udp", remote=REMOTE, local=LOCAL)


ODD_NAMES = """example.org {
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
    template IN CNAME example.org {
        answer "{{ .Name }} 60 IN CNAME x.{{ .Name }}"
    }
}
"""


@pytest.mark.parametrize(
    "labels,text",
    [
        ((b"\xff\xfe", b"example", b"org"), "\\255\\254.example.org."),
        ((b"\x80\x9f", b"Example", b"ORG"), "\\128\\159.Example.ORG."),
        ((b"a.b", b"example", b"org"), "a\\.b.example.org."),
        ((b"a\\b", b"example", b"org"), "a\\\\b.example.org."),
        ((b"a b", b"example", b"org"), "a\\ b.example.org."),
        ((b"a;b", b"(x)", b"example", b"org"), "a\\;b.\\(x\\).example.org."),  # a zone-file `;`
    ],
)
async def test_name_is_escaped_and_owners_keep_the_question_bytes(
    labels: tuple[bytes, ...], text: str
) -> None:
    """Bug `text-escapes`: `\\255\\254.example.org` came back as `xn--vdab.example.org`."""
    assert odd_request(labels).qname == text  # what `{{ .Name }}` expands to
    block = first_block(ODD_NAMES)
    code, w = await serve(block, odd_request(labels))
    assert code == rc.NOERROR
    reply = parse_message(w.sent[0])
    (answer,) = reply.rr
    assert tuple(bytes(x) for x in answer.rname.label) == labels
    code, w = await serve(block, odd_request(labels, "CNAME"))
    (cname,) = parse_message(w.sent[0]).rr
    assert tuple(bytes(x) for x in cname.rname.label) == labels
    assert tuple(bytes(x) for x in cname.rdata.label.label) == (b"x", *labels)
