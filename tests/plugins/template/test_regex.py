from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterdns.plugins.template.regex import RegexError, compile_re2

# (RE2 pattern, subject, whole match and groups or None). Expected values are what Go's regexp
# package gives for FindStringSubmatch.
MATCHES: list[tuple[str, str, tuple[str, ...] | None]] = [
    (".*", "foo.example.org.", ("foo.example.org.",)),
    ("^ip-(?P<a>[0-9]+)[.]", "ip-10.example.", ("ip-10.", "10")),
    ("(?<a>x)(y)?", "x", ("x", "x", "")),  # Go 1.22 named-group spelling; unmatched group is ""
    ("(?P<1st>x)", "x", ("x", "x")),  # a name Python would reject
    # $ only matches at the very end of the text (no newline before it), unless (?m).
    ("a$", "a\n", None),
    ("(?m)a$", "a\nb", ("a",)),
    ("(?m)^b", "a\nb", ("b",)),
    ("^b", "a\nb", None),
    (r"a\z", "a", ("a",)),
    (r"\Aa", "ba", None),
    # . never matches a newline unless (?s).
    ("a.b", "a\nb", None),
    ("(?s)a.b", "a\nb", ("a\nb",)),
    # (?i) lasts to the end of the group, across later alternatives.
    ("a(?i)b|C", "c", ("c",)),
    ("a(?i)b|C", "aB", ("aB",)),
    ("(?i:A)b", "aB", None),
    ("(?i:A)b", "ab", ("ab",)),
    ("((?i)a)a", "AA", None),
    ("((?i)a)a", "Aa", ("Aa", "A")),
    ("(?i)[a-c]+", "xAbC", ("AbC",)),
    ("(?i-i:a)", "A", None),
    # (?U) swaps greedy and lazy.
    ("(?U)a+", "aaa", ("a",)),
    ("(?U)a+?", "aaa", ("aaa",)),
    ("a+?", "aaa", ("a",)),
    # {n,m}; a { that is not a repeat is a literal.
    ("a{2}", "aaa", ("aa",)),
    ("a{2,}", "aaaa", ("aaaa",)),
    ("a{1,2}", "aaa", ("aa",)),
    ("a{,3}", "a{,3}", ("a{,3}",)),
    ("a{x}", "a{x}", ("a{x}",)),
    ("a{01}", "a{01}", ("a{01}",)),
    # Escapes Python spells differently or not at all.
    (r"\Qa.b*\E", "a.b*", ("a.b*",)),
    (r"\Qa.b", "axb", None),
    (r"\x41\x{42}\103\0", "ABC\0", ("ABC\0",)),
    (r"\.\-\_", ".-_", (".-_",)),
    (r"\d+\s\w", "x 12 a", ("12 a",)),
    # Classes: POSIX names, a leading ], a - after a range, escapes inside.
    ("[[:digit:]]+", "ab123", ("123",)),
    ("[[:^alpha:][:digit:]]+", "ab1-2", ("1-2",)),
    ("[]a]+", "x]a]", ("]a]",)),
    ("[a-c-e]+", "x-ae", ("-ae",)),
    (r"[\d.]+", "v1.2", ("1.2",)),
    (r"[^\x61]", "ab", ("b",)),
    ("[&&~|]+", "a&~|", ("&~|",)),
    ("(a|)+b", "b", ("b", "")),
    ("^*a", "a", ("a",)),
]


@pytest.mark.parametrize("pattern,text,want", MATCHES, ids=[m[0] for m in MATCHES])
def test_matches_like_go(pattern: str, text: str, want: tuple[str, ...] | None) -> None:
    assert compile_re2(pattern).search(text) == want


def test_group_map_has_numbers_and_names() -> None:
    found = compile_re2("^(?P<host>[a-z]+)-([0-9]+)(x)?").groups("web-12.example.")
    assert found == (
        ("web-12", "web", "12", ""),
        {"0": "web-12", "1": "web", "2": "12", "3": "", "host": "web"},
    )
    assert compile_re2("^z").groups("a") is None


ERRORS = [
    ("(?=x)", "invalid or unsupported Perl syntax: `(?=`"),
    ("(?!x)", "invalid or unsupported Perl syntax: `(?!`"),
    ("(?<=x)", "invalid or unsupported Perl syntax: `(?<`"),
    ("(?>x)", "invalid or unsupported Perl syntax: `(?>`"),
    ("(?P=a)", "invalid or unsupported Perl syntax: `(?P`"),
    ("(?x)a", "invalid or unsupported Perl syntax: `(?x`"),
    ("(?)", "invalid or unsupported Perl syntax: `(?)`"),
    ("(?i-)", "invalid or unsupported Perl syntax: `(?i-)`"),
    ("a**", "invalid nested repetition operator: `**`"),
    ("a*+", "invalid nested repetition operator: `*+`"),
    ("a+{2}", "invalid nested repetition operator: `+{2}`"),
    ("*a", "missing argument to repetition operator: `*`"),
    ("(?i)*", "missing argument to repetition operator: `*`"),
    ("a|?", "missing argument to repetition operator: `?`"),
    ("(a", "missing closing ): `(a`"),
    ("a)", "unexpected ): `a)`"),
    ("[a", "missing closing ]: `[a`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("a{3,2}", "invalid repeat count: `{3,2}`"),
    ("[z-a]", "invalid character class range: `z-a`"),
    ("[[:word2:]]", "invalid character class range: `[:word2:]`"),
    (r"\1", r"invalid escape sequence: `\1`"),
    (r"\8", r"invalid escape sequence: `\8`"),
    (r"\k", r"invalid escape sequence: `\k`"),
    (r"\C", r"invalid escape sequence: `\C`"),
    (r"\x4", r"invalid escape sequence: `\x4`"),
    (r"\x{110000}", r"invalid escape sequence: `\x{110000}`"),
    ("a\\", "trailing backslash at end of expression: ``"),
    (r"\pL", r"Unicode character classes are not supported: `\pL`"),
    ("(?P<a>x)(?P<a>y)", "duplicate capture group name: `(?P<a>`"),
    ("(?P<a-b>x)", "invalid named capture: `(?P<a-b>`"),
    ("(?P<>x)", "invalid named capture: `(?P<>`"),
]


@pytest.mark.parametrize("pattern,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_rejects_what_re2_rejects(pattern: str, message: str) -> None:
    with pytest.raises(RegexError) as exc:
        compile_re2(pattern)
    assert str(exc.value) == message


def test_source_is_kept_and_compared() -> None:
    r = compile_re2("^a(?P<b>c)$")
    assert r.source == "^a(?P<b>c)$"
    assert r.names == ("b",)
    assert r == compile_re2("^a(?P<b>c)$")


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF)))
def test_quoted_text_matches_only_itself(text: str) -> None:
    if "\\E" in text:
        text = text.replace("\\E", "")
    r = compile_re2("^\\Q" + text + "\\E$")
    assert r.search(text) == (text,)
    assert r.search(text + "x") is None
