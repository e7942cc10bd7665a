from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from clusterdns.chain.order import DIRECTIVES
from clusterdns.corefile import parse as parse_corefile
from clusterdns.errors import CorefileErrors
from clusterdns.plugins.rewrite import Rewrite, Rule, parse
from clusterdns.plugins.rewrite.config import parse_code, parse_ttl, type_number
from clusterdns.plugins.rewrite.rules import (
    Action,
    ClassRule,
    Match,
    Mode,
    NameMatcher,
    NameRule,
    OptionRule,
    OwnerRewrite,
    RcodeRule,
    RegexRewrite,
    SubnetRule,
    SuffixSwap,
    TtlRule,
    TypeRule,
    ValueRewrite,
    Variable,
)
from tests.dnstest import build_config


def corefile(lines: str) -> str:
    return ". {\n" + lines + "    whoami\n}\n"


def rules_of(lines: str) -> tuple[Rule, ...]:
    block = parse_corefile(corefile(lines), "Corefile", DIRECTIVES)[0]
    return parse(block.lines_of("rewrite"))


@dataclass(frozen=True, kw_only=True)
class Valid:
    lines: str
    rules: tuple[Rule, ...]


US_WEST = re.compile(r"(.*)-(us-west-1)\.example\.org")
CONSUL = re.compile(r"(.*)\.service\.(us-west-1)\.consul")

VALID = [
    Valid(
        lines="    rewrite name registry.example.com registry.tools.svc.cluster.local\n",
        rules=(
            NameRule(
                source="registry.example.com.",
                target="registry.tools.svc.cluster.local.",
                auto=True,
            ),
        ),
    ),
    Valid(
        lines="    rewrite Continue name EXACT A.com B.com.\n",
        rules=(NameRule(mode=Mode.CONTINUE, source="a.com.", target="b.com.", auto=True),),
    ),
    Valid(
        lines="    rewrite stop name prefix foo bar\n",
        rules=(NameRule(match=Match.PREFIX, source="foo.", target="bar."),),
    ),
    Valid(
        lines="    rewrite name prefix foo bar answer auto\n",
        rules=(NameRule(match=Match.PREFIX, source="foo.", target="bar.", auto=True),),
    ),
    Valid(
        lines="    rewrite name suffix .schmoogle.com .google.com. answer auto\n",
        rules=(
            NameRule(
                match=Match.SUFFIX,
                source=".schmoogle.com.",
                target=".google.com.",
                answers=(
                    OwnerRewrite(SuffixSwap(".google.com.", ".schmoogle.com.")),
                    ValueRewrite(SuffixSwap(".google.com.", ".schmoogle.com.")),
                ),
            ),
        ),
    ),
    Valid(
        lines="    rewrite name substring service.us-west-1.example.org service.us-west-1.consul\n",
        rules=(
            NameRule(
                match=Match.SUBSTRING,
                source="service.us-west-1.example.org.",
                target="service.us-west-1.consul.",
            ),
        ),
    ),
    Valid(
        lines="    rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.Consul\n",
        rules=(
            NameRule(
                match=Match.REGEX,
                source=US_WEST.pattern,
                target="{1}.service.{2}.consul.",
                pattern=US_WEST,
            ),
        ),
    ),
    Valid(
        # The block form joins every word into one rule; `answer` may be left out the 2nd time.
        lines="    rewrite stop {\n"
        "        name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul\n"
        "        answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org\n"
        "        value (.*)\\.service\\.(us-west-1)\\.consul {1}.example.org\n"
        "    }\n",
        rules=(
            NameRule(
                match=Match.REGEX,
                source=US_WEST.pattern,
                target="{1}.service.{2}.consul.",
                pattern=US_WEST,
                answers=(
                    OwnerRewrite(RegexRewrite(CONSUL, "{1}-{2}.example.org.")),
                    ValueRewrite(RegexRewrite(CONSUL, "{1}.example.org.")),
                ),
            ),
        ),
    ),
    Valid(
        lines="    rewrite {\n        continue type any hinfo\n    }\n",
        rules=(TypeRule(mode=Mode.CONTINUE, source=255, target=13),),
    ),
    Valid(lines="    rewrite class ch in\n", rules=(ClassRule(source=3, target=1),)),
    Valid(
        lines="    rewrite ttl example.com 30-300\n"
        "    rewrite continue ttl regex (.*)\\.rocks -30\n"
        "    rewrite ttl suffix .org 30-\n"
        "    rewrite ttl prefix www 15\n",
        rules=(
            TtlRule(names=NameMatcher(Match.EXACT, "example.com."), low=30, high=300),
            TtlRule(
                mode=Mode.CONTINUE,
                names=NameMatcher(Match.REGEX, r"(.*)\.rocks", re.compile(r"(.*)\.rocks")),
                low=0,
                high=30,
            ),
            TtlRule(names=NameMatcher(Match.SUFFIX, ".org."), low=30, high=2147483647),
            TtlRule(names=NameMatcher(Match.PREFIX, "www."), low=15, high=15),
        ),
    ),
    Valid(
        lines="    rewrite continue rcode substring coredns SERVFAIL noerror\n"
        "    rewrite rcode a.org 2 23\n",
        rules=(
            RcodeRule(
                mode=Mode.CONTINUE,
                names=NameMatcher(Match.SUBSTRING, "coredns."),
                old=2,
                new=0,
            ),
            RcodeRule(names=NameMatcher(Match.EXACT, "a.org."), old=2, new=23),
        ),
    ),
    Valid(
        lines="    rewrite edns0 local set 0xffee 0x61626364\n"
        "    rewrite edns0 local append 65518 abcd revert\n"
        "    rewrite edns0 local replace 0xffee {client_ip}\n"
        "    rewrite edns0 LOCAL UNSET 0xffee\n"
        "    rewrite edns0 nsid set\n"
        "    rewrite edns0 nsid unset\n"
        "    rewrite edns0 subnet set 24 56 revert\n"
        "    rewrite edns0 subnet unset\n",
        rules=(
            OptionRule(action=Action.SET, code=0xFFEE, data=b"abcd"),
            OptionRule(action=Action.APPEND, code=0xFFEE, data=b"abcd", revert=True),
            OptionRule(action=Action.REPLACE, code=0xFFEE, variable=Variable.CLIENT_IP),
            OptionRule(action=Action.UNSET, code=0xFFEE),
            OptionRule(action=Action.SET, code=3),
            OptionRule(action=Action.UNSET, code=3),
            SubnetRule(action=Action.SET, v4_bits=24, v6_bits=56, revert=True),
            SubnetRule(action=Action.UNSET),
        ),
    ),
]


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.lines.strip().split("\n")[0])
def test_valid(case: Valid) -> None:
    assert rules_of(case.lines) == case.rules
    head = build_config(corefile(case.lines)).blocks[0].head
    assert isinstance(head, Rewrite)
    assert head.rules == case.rules


@dataclass(frozen=True, kw_only=True)
class Invalid:
    lines: str
    error: str


def invalid(line: str, error: str, *, at: int = 2) -> Invalid:
    return Invalid(lines=f"    {line}\n", error=f"Corefile:{at}: rewrite: {error}")


INVALID = [
    invalid("rewrite", "no rule type specified for rewrite"),
    invalid("rewrite continue", "continue rule must begin with a rule type"),
    invalid("rewrite stop", "stop rule must begin with a rule type"),
    invalid("rewrite foo a b", 'invalid rule type "foo"'),
    invalid("rewrite continue foo a b", 'invalid rule type "continue"'),
    invalid("rewrite answer name a b", "response rewrites must begin with a name rule"),
    invalid("rewrite cname exact a. b.", "cname rules are not supported by clusterdns"),
    invalid("rewrite name", "too few arguments for a name rule"),
    invalid("rewrite name a.com", "too few arguments for a name rule"),
    invalid(
        "rewrite name a.com b.com c.com",
        "name rule supports only exact, prefix, suffix, substring, and regex name matching, "
        "received: a.com",
    ),
    invalid(
        "rewrite name regex ([a]\\.com new-{1}.com",
        "invalid regex matching pattern: ([a]\\.com",
    ),
    invalid(
        "rewrite name regex a\\.com new-{1}.com",
        "the rewrite regex pattern (new-{1}.com) uses more subexpressions than its corresponding "
        "matching regex pattern (a\\.com)",
    ),
    invalid(
        "rewrite name regex " + "a" * 10001 + " b",
        "regex pattern too long: 10001 > 10000",
    ),
    invalid(
        "rewrite name exact a.com b(.com",
        "invalid regex matching pattern: b(.com.",
    ),
    invalid(
        "rewrite name regex (a)\\.com {1}.com too.long way.too.long",
        "exceeded the number of arguments for a non-answer rule argument for regex rule",
    ),
    invalid(
        "rewrite name regex (a)\\.com {1}.com NoAnswer name (x) {1}",
        "exceeded the number of arguments for a non-answer rule argument for regex rule",
    ),
    invalid(
        "rewrite name regex (a)\\.com {1}.com answer ttl (x) {1}",
        'invalid type "ttl" for answer rule for regex rule',
    ),
    invalid(
        "rewrite name regex (a)\\.com {1}.com answer name (x)",
        "name answer rule for regex rule: 2 arguments required",
    ),
    invalid(
        "rewrite name regex (a)\\.com {1}.com answer name ([ y",
        "name answer rule for regex rule: invalid regex matching pattern: ([",
    ),
    invalid(
        "rewrite name prefix a b answer value x {1}",
        "value answer rule for prefix rule: the rewrite regex pattern ({1}) uses more "
        "subexpressions than its corresponding matching regex pattern (x)",
    ),
    invalid("rewrite name exact a b answer", "invalid arguments for exact rule"),
    invalid(
        "rewrite name exact a b answer auto answer", "type missing for answer rule for exact rule"
    ),
    invalid(
        "rewrite name exact a b answer answer",
        'invalid type "answer" for answer rule for exact rule',
    ),
    invalid(
        "rewrite name suffix a b answer auto answer name x y",
        "auto name answer rule cannot be combined with explicit name answer rules",
    ),
    invalid("rewrite type", "type rules must have exactly two arguments"),
    invalid("rewrite type a", "type rules must have exactly two arguments"),
    invalid("rewrite type any a a", "type rules must have exactly two arguments"),
    invalid("rewrite type XY WV", 'invalid type "XY"'),
    invalid("rewrite type ANY wv", 'invalid type "WV"'),
    invalid("rewrite class IN", "class rules must have exactly two arguments"),
    invalid("rewrite class IN WV", 'invalid class "WV"'),
    invalid("rewrite edns0", "too few arguments for an EDNS0 rule"),
    invalid("rewrite edns0 local", "too few arguments for an EDNS0 rule"),
    invalid("rewrite edns0 local foo 0xffee abc", 'invalid action: "foo"'),
    invalid("rewrite edns0 unknown set", 'invalid rule type "unknown"'),
    invalid("rewrite edns0 unknown unset", 'invalid rule type "unknown"'),
    invalid("rewrite edns0 local set", "EDNS0 local rules require three or four args"),
    invalid("rewrite edns0 local set 0xffee", "EDNS0 local rules require three or four args"),
    invalid("rewrite edns0 local set invalid-uint abc", 'invalid EDNS0 option code "invalid-uint"'),
    invalid("rewrite edns0 local set 0x10000 abc", 'invalid EDNS0 option code "0x10000"'),
    invalid("rewrite edns0 local set 0xffee 0xabcdefg", 'invalid hex data "0xabcdefg"'),
    invalid("rewrite edns0 local set 0xffee 0xabc", 'invalid hex data "0xabc"'),
    invalid("rewrite edns0 local set 0xffee {dummy}", 'unsupported variable name "{dummy}"'),
    invalid(
        "rewrite edns0 local set 0xffee {kubernetes/pod-name}",
        "metadata variable {kubernetes/pod-name} is not supported by clusterdns "
        "(no metadata plugin)",
    ),
    invalid(
        "rewrite edns0 local unset 0xffee abc", "local unset action requires exactly two arguments"
    ),
    invalid(
        "rewrite edns0 local unset 0xffee revert",
        "local unset action requires exactly two arguments",
    ),
    invalid("rewrite edns0 nsid set junk", "EDNS0 NSID rules can accept no more than one arg"),
    invalid("rewrite edns0 nsid unset revert", "nsid unset action requires exactly one argument"),
    invalid("rewrite edns0 subnet set 33 56", "invalid IPv4 bit mask length 33"),
    invalid("rewrite edns0 subnet set 24 129", "invalid IPv6 bit mask length 129"),
    invalid("rewrite edns0 subnet set -1 56", 'invalid IPv4 bit mask length "-1"'),
    invalid(
        "rewrite edns0 subnet append 24 56 72", "EDNS0 subnet rules require three or four args"
    ),
    invalid(
        "rewrite edns0 subnet unset 24 56", "subnet unset action requires exactly one argument"
    ),
    invalid("rewrite ttl a.com", "too few (1) arguments for a ttl rule"),
    invalid("rewrite ttl a.com -", "invalid TTL '-' for a ttl rule"),
    invalid("rewrite ttl a.com 300-30", "invalid TTL '300-30' for a ttl rule"),
    invalid("rewrite ttl a.com 1-2-3", "invalid TTL '1-2-3' for a ttl rule"),
    invalid("rewrite ttl a.com 4294967296", "invalid TTL '4294967296' for a ttl rule"),
    invalid(
        "rewrite ttl bogus a.com 30",
        "ttl rule supports only exact, prefix, suffix, substring, and regex name matching",
    ),
    invalid("rewrite ttl regex ([ 30", "invalid regex pattern in a ttl rule: (["),
    invalid("rewrite ttl exact a b 30", "too many arguments for a ttl rule"),
    invalid("rewrite rcode a.com SERVFAIL", "too few (2) arguments for a rcode rule"),
    invalid("rewrite rcode a.com BOGUS NOERROR", "invalid matching RCODE 'BOGUS' for a rcode rule"),
    invalid("rewrite rcode a.com 2 24", "invalid replacement RCODE '24' for a rcode rule"),
    invalid(
        "rewrite rcode bogus a.com 2 0",
        "rcode rule supports only exact, prefix, suffix, substring, and regex name matching",
    ),
    invalid("rewrite rcode regex (( 2 0", "invalid regex pattern in a rcode rule: (("),
    invalid("rewrite rcode exact a 2 0 1", "too many arguments for a rcode rule"),
    Invalid(
        lines="    rewrite name a. b. {\n        exact c. d.\n    }\n",
        error="Corefile:2: rewrite: a rule written on the rewrite line cannot also have a block",
    ),
    Invalid(
        # Errors in the block form name the line of the word at fault.
        lines="    rewrite stop {\n        name regex\n        ([ x\n    }\n",
        error="Corefile:4: rewrite: invalid regex matching pattern: ([",
    ),
    Invalid(
        lines="    rewrite name a. b.\n    rewrite type ANY\n",
        error="Corefile:3: rewrite: type rules must have exactly two arguments",
    ),
]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.lines.strip()[:60])
def test_invalid(case: Invalid) -> None:
    with pytest.raises(CorefileErrors) as info:
        build_config(corefile(case.lines))
    assert [str(e) for e in info.value.errors] == [case.error]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("30", (30, 30)),
        ("0", (0, 0)),
        ("30-300", (30, 300)),
        ("-30", (0, 30)),
        ("30-", (30, 2147483647)),
        ("5-5", (5, 5)),
        ("-", None),
        ("+5", None),
        ("", None),
        ("a-b", None),
        ("4294967295", (4294967295, 4294967295)),
    ],
)
def test_parse_ttl(text: str, want: tuple[int, int] | None) -> None:
    assert parse_ttl(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("65518", 65518),
        ("0xffee", 0xFFEE),
        ("0XFFEE", 0xFFEE),
        ("017", 15),
        ("0o17", 15),
        ("0b101", 5),
        ("0", 0),
        ("08", None),
        ("-1", None),
        ("1_000", None),
        ("65536", None),
    ],
)
def test_parse_code(text: str, want: int | None) -> None:
    assert parse_code(text) == want


def test_type_numbers() -> None:
    assert type_number("hinfo") == 13
    assert type_number("ANY") == 255
    assert type_number("NAPTR") == 35
    assert type_number("TYPE65280") is None
    assert type_number("nope") is None
