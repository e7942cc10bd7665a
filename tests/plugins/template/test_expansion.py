from __future__ import annotations

import pytest

from clusterdns.plugins.template.expansion import (
    TemplateData,
    TemplateExecError,
    TemplateSyntaxError,
    parse_template,
)

DATA = TemplateData(
    zone="example.org.",
    name="Ip-0a01ff.Example.Org.",
    regex="^ip-(?P<b>..)(?P<c>..)(x)?",
    match=("ip-0a01", "0a", "01", ""),
    group={"0": "ip-0a01", "1": "0a", "2": "01", "3": "", "b": "0a", "c": "01"},
    class_="IN",
    type_="A",
    remote="10.240.0.1",
)

# (template, output, the template as Go prints it: the `template` metrics label)
EXPANSIONS = [
    (
        "{{ .Name }} 60 IN A 10.0.0.1",
        "Ip-0a01ff.Example.Org. 60 IN A 10.0.0.1",
        "{{.Name}} 60 IN A 10.0.0.1",
    ),
    (
        "{{ .Zone }} {{ .Class }} {{ .Type }} {{ .Remote }}",
        "example.org. IN A 10.240.0.1",
        "{{.Zone}} {{.Class}} {{.Type}} {{.Remote}}",
    ),
    ("{{ .Regex }}", "^ip-(?P<b>..)(?P<c>..)(x)?", "{{.Regex}}"),
    (
        "{{ index .Match 1 }}/{{index .Match 0}}",
        "0a/ip-0a01",
        "{{index .Match 1}}/{{index .Match 0}}",
    ),
    ('{{ .Group.b }}{{ index .Group "c" }}', "0a01", '{{.Group.b}}{{index .Group "c"}}'),
    # A missing key prints Go's "<no value>" via a field, and "" via index.
    (
        "[{{ .Group.nope }}][{{ index .Group `nope` }}]",
        "[<no value>][]",
        "[{{.Group.nope}}][{{index .Group `nope`}}]",
    ),
    ("{{ .Match }} {{ len .Match }}", "[ip-0a01 0a 01 ] 4", "{{.Match}} {{len .Match}}"),
    ("{{ .Group }}", "map[0:ip-0a01 1:0a 2:01 3: b:0a c:01]", "{{.Group}}"),
    (
        "{{ parseInt .Group.b 16 8 }}.{{ parseInt (index .Match 2) 16 8 }}",
        "10.1",
        "{{parseInt .Group.b 16 8}}.{{parseInt (index .Match 2) 16 8}}",
    ),
    ("{{ .Group.b | len }}", "2", "{{.Group.b | len}}"),
    ("a  {{- .Zone -}}  b", "aexample.org.b", "a{{.Zone}}b"),
    ("a {{/* note */}}b{{- /* trimmed */ -}} c", "a bc", "a bc"),
    ('{{ "}}\\x41\\t" }}', "}}A\t", '{{"}}\\x41\\t"}}'),
    ("{{ 017 }} {{ 0x1F }} {{ -3 }}", "15 31 -3", "{{017}} {{0x1F}} {{-3}}"),
    ('{{index "AB" 1}}', "66", '{{index "AB" 1}}'),
    ("no actions", "no actions", "no actions"),
]


@pytest.mark.parametrize("text,output,printed", EXPANSIONS, ids=[e[0] for e in EXPANSIONS])
def test_expands(text: str, output: str, printed: str) -> None:
    t = parse_template(text)
    assert t.execute(DATA) == output
    assert str(t) == printed
    assert t.source == text


PARSE_INTS = [
    ('"ff" 16 8', "255"),
    ('"0xff" 0 0', "255"),
    ('"0b101" 0 0', "5"),
    ('"0o17" 0 0', "15"),
    ('"017" 0 0', "15"),
    ('"0" 0 0', "0"),
    ('"1_000" 0 0', "1000"),
    ('"z" 36 0', "35"),
    ('"18446744073709551615" 10 0', "18446744073709551615"),
]


@pytest.mark.parametrize("args,output", PARSE_INTS)
def test_parse_int_is_go_parse_uint(args: str, output: str) -> None:
    assert parse_template("{{ parseInt " + args + " }}").execute(DATA) == output


EXEC_ERRORS = [
    ("{{ index .Match 4 }}", "error calling index: index out of range: 4"),
    ("{{ index .Match -1 }}", "error calling index: index out of range: -1"),
    ('{{ index .Match "1" }}', "error calling index: cannot index slice/array with type string"),
    ("{{ index .Group 1 }}", "error calling index: value has type int; should be string"),
    ("{{ index 1 1 }}", "error calling index: can't index item of type int"),
    ("{{ len 3 }}", "error calling len: len of type int"),
    ("{{ parseInt .Group.nope 16 8 }}", "error calling parseInt: invalid value; expected string"),
    (
        "{{ parseInt .Group.b 10 8 }}",
        'error calling parseInt: strconv.ParseUint: parsing "0a": invalid syntax',
    ),
    (
        '{{ parseInt "256" 10 8 }}',
        'error calling parseInt: strconv.ParseUint: parsing "256": value out of range',
    ),
    (
        '{{ parseInt "" 10 8 }}',
        'error calling parseInt: strconv.ParseUint: parsing "": invalid syntax',
    ),
    (
        '{{ parseInt "1" 1 8 }}',
        'error calling parseInt: strconv.ParseUint: parsing "1": invalid base 1',
    ),
    (
        '{{ parseInt "1" 10 65 }}',
        'error calling parseInt: strconv.ParseUint: parsing "1": invalid bit size 65',
    ),
    (
        '{{ parseInt "_1" 0 0 }}',
        'error calling parseInt: strconv.ParseUint: parsing "_1": invalid syntax',
    ),
    (
        '{{ parseInt "1_" 0 0 }}',
        'error calling parseInt: strconv.ParseUint: parsing "1_": invalid syntax',
    ),
    (
        '{{ parseInt "1_0" 10 0 }}',
        'error calling parseInt: strconv.ParseUint: parsing "1_0": invalid syntax',
    ),
    (
        '{{ parseInt .Name "16" 8 }}',
        "error calling parseInt: wrong type for value; expected int; got string",
    ),
    (
        "{{ .Name | parseInt 16 8 }}",
        "error calling parseInt: wrong type for value; expected string; got int",
    ),
]


@pytest.mark.parametrize("text,message", EXEC_ERRORS, ids=[e[0] for e in EXEC_ERRORS])
def test_execution_errors(text: str, message: str) -> None:
    t = parse_template(text)
    with pytest.raises(TemplateExecError) as exc:
        t.execute(DATA)
    assert str(exc.value) == message


SYNTAX_ERRORS = [
    ("{{ .Message }}", ".Message is not supported"),
    ("{{ .Question.Name }}", ".Question is not supported"),
    ("{{ .Var.x }}", ".Var is not supported"),
    ('{{ .Meta "kubernetes/client-namespace" }}', ".Meta is not supported"),
    (
        "{{ .Nope }}",
        "unknown field .Nope (supported: .Class, .Group, .Match, .Name, .Regex, "
        ".Remote, .Type, .Zone)",
    ),
    ("{{ .Name.x }}", "can't evaluate field x in .Name.x"),
    ("{{ .Group.a.b }}", "can't evaluate field b in .Group.a.b"),
    ("{{ . }}", "{{ . }} is not supported; use a field such as .Name"),
    ("{{ $x }}", "variables ($x) are not supported"),
    ("{{ $x := 1 }}", "variables ($x) are not supported"),
    ("{{ range .Match }}{{ end }}", "{{range}} is not supported"),
    ("{{ with .Name }}{{ end }}", "{{with}} is not supported"),
    ('{{ printf "%s" .Name }}', "printf is not supported"),
    ("{{ true }}", "true is not supported"),
    ("{{ lower .Name }}", 'function "lower" not defined'),
    ("{{ index }}", "wrong number of args for index: want at least 1 got 0"),
    ("{{ len .Name .Zone }}", "wrong number of args for len: want 1 got 2"),
    ("{{ .Name .Zone }}", "can't give argument to non-function .Name"),
    ("{{ .Name | .Zone }}", "non executable command in pipeline stage 2"),
    ("{{ index .Match len }}", "function len must come first in a command"),
    ("{{ }}", "missing value for command"),
    ("{{ .Name", "unclosed action"),
    ("{{ (.Name }}", "unclosed left paren"),
    ("{{ (index .Group `b`).x }}", "fields of a parenthesised pipeline are not supported"),
    ('{{ "abc }}', "unterminated quoted string"),
    ("{{ `abc }}", "unterminated raw quoted string"),
    ('{{ "\\q" }}', 'invalid syntax in string "\\q"'),
    ("{{ 1.5 }}", "only integer constants are supported, got 1.5"),
    ("{{ .Name ) }}", "unexpected ')' in command"),
    ("{{/* x */ }}", "comment ends before closing delimiter"),
    ("{{/* x }}", "unclosed comment"),
]


@pytest.mark.parametrize("text,message", SYNTAX_ERRORS, ids=[e[0] for e in SYNTAX_ERRORS])
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as exc:
        parse_template(text)
    assert str(exc.value) == message
