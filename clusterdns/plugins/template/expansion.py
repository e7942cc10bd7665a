"""The subset of Go text/template that the template plugin's `answer`/`authority`/`additional` use.

Supported: text; actions `{{ PIPELINE }}` with trim markers (`{{- ` and ` -}}`) and comments
(`{{/* ... */}}`); fields of the query data (`.Name`, `.Zone`, `.Class`, `.Type`, `.Regex`,
`.Match`, `.Group`, `.Remote`) and map keys below `.Group` (`.Group.name`); string and integer
literals; parenthesised pipelines; pipes (`x | f`); the functions `index`, `len` and `parseInt`
(Go's strconv.ParseUint). Values print as Go's fmt does; a missing map key prints `<no value>`.

Everything else Go templates allow (variables, `if`/`range`/`with`, other functions, `.Message`,
`.Question`, `.Var`, `.Meta`) is rejected when the template is parsed, so a Corefile that uses it
fails at setup with file and line rather than at the first query.

Parsing happens once at setup; `execute` is pure and raises TemplateExecError, which the handler
turns into SERVFAIL. This module knows nothing about DNS or Corefiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

FIELDS: Final = frozenset({"Name", "Zone", "Class", "Type", "Regex", "Match", "Group", "Remote"})
"""Fields of the query data a template may read."""
UNSUPPORTED_FIELDS: Final = frozenset({"Message", "Question", "Var", "Meta"})
FUNCTIONS: Final = {"index": (1, -1), "len": (1, 1), "parseInt": (3, 3)}
"""Supported functions and their (least, most) argument counts; -1 = no limit."""
GO_BUILTINS: Final = frozenset(
    {
        "and",
        "call",
        "eq",
        "ge",
        "gt",
        "html",
        "js",
        "le",
        "lt",
        "ne",
        "not",
        "or",
        "print",
        "printf",
        "println",
        "slice",
        "urlquery",
    }
)
KEYWORDS: Final = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
NO_VALUE: Final = "<no value>"


class TemplateSyntaxError(ValueError):
    """A template that does not parse, or uses something outside the supported subset."""


class TemplateExecError(Exception):
    """A template that failed while executing (Go's template execution error)."""


@dataclass(frozen=True, slots=True)
class TemplateData:
    """What a template sees for one matched query."""

    zone: str
    name: str
    regex: str
    match: tuple[str, ...]
    group: Mapping[str, str]
    class_: str
    type_: str
    remote: str

    def field(self, name: str) -> Value:
        """Return the root field `name` (one of FIELDS)."""
        match name:
            case "Name":
                return self.name
            case "Zone":
                return self.zone
            case "Class":
                return self.class_
            case "Type":
                return self.type_
            case "Regex":
                return self.regex
            case "Match":
                return self.match
            case "Group":
                return self.group
            case "Remote":
                return self.remote
        raise TemplateExecError(f"can't evaluate field {name}")


class _Missing:
    """A map lookup that found nothing (Go's invalid reflect.Value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return NO_VALUE


MISSING: Final = _Missing()

Value = str | int | tuple[str, ...] | Mapping[str, str] | _Missing


# --- the tree ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """`.A.B`: a root field, then map keys."""

    path: tuple[str, ...]

    def __str__(self) -> str:
        return "." + ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Literal:
    """A string or integer constant; `raw` is its spelling in the template."""

    value: str | int
    raw: str

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True, slots=True)
class Function:
    """A function name in command position."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Commands joined by `|`; each command is a list of arguments."""

    commands: tuple[tuple[Arg, ...], ...]

    def __str__(self) -> str:
        return " | ".join(" ".join(_arg_str(a) for a in cmd) for cmd in self.commands)


Arg = Field | Literal | Function | Pipeline


def _arg_str(arg: Arg) -> str:
    return f"({arg})" if isinstance(arg, Pipeline) else str(arg)


@dataclass(frozen=True, slots=True)
class Action:
    """`{{ pipeline }}`."""

    pipeline: Pipeline

    def __str__(self) -> str:
        return "{{" + str(self.pipeline) + "}}"


Node = str | Action


@dataclass(frozen=True, slots=True)
class TextTemplate:
    """A parsed template: literal text and actions, in order."""

    source: str
    nodes: tuple[Node, ...]

    def __str__(self) -> str:
        """The template as Go prints its parse tree (the metrics `template` label)."""
        return "".join(str(n) for n in self.nodes)

    def execute(self, data: TemplateData) -> str:
        """Render the template for one query.

        Raises:
            TemplateExecError: a function failed (index out of range, bad number, wrong type).
        """
        out: list[str] = []
        for node in self.nodes:
            if isinstance(node, str):
                out.append(node)
            else:
                out.append(format_value(_eval_pipeline(node.pipeline, data)))
        return "".join(out)


def format_value(value: Value) -> str:
    """Print a value as Go's fmt.Print would."""
    if isinstance(value, _Missing):
        return NO_VALUE
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "[" + " ".join(value) + "]"
    return "map[" + " ".join(f"{k}:{value[k]}" for k in sorted(value)) + "]"


# --- parsing -------------------------------------------------------------------------------

_SPACE: Final = " \t\r\n"


def parse_template(text: str) -> TextTemplate:
    """Parse a template.

    Raises:
        TemplateSyntaxError: bad syntax, or a construct outside the supported subset.
    """
    nodes: list[Node] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        if start < 0:
            if chunk:
                nodes.append(chunk)
            break
        inner_start = start + 2
        if text.startswith("-", inner_start) and text[inner_start + 1 : inner_start + 2] in tuple(
            _SPACE
        ):
            chunk = chunk.rstrip(_SPACE)
            inner_start += 2
        if chunk:
            nodes.append(chunk)
        action, pos, trim_next = _parse_action(text, inner_start)
        if action is not None:
            nodes.append(action)
    return TextTemplate(source=text, nodes=tuple(_merge_text(nodes)))


def _merge_text(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, str) and out and isinstance(out[-1], str):
            out[-1] = out[-1] + n
        else:
            out.append(n)
    return out


def _parse_action(text: str, pos: int) -> tuple[Action | None, int, bool]:
    """Parse from just inside `{{` (after any left trim) to just after `}}`."""
    body_start = pos
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    if text.startswith("/*", pos):
        end = text.find("*/", pos + 2)
        if end < 0:
            raise TemplateSyntaxError("unclosed comment")
        after = end + 2
        trim = False
        if text.startswith(" -}}", after):
            trim, after = True, after + 4
        elif text.startswith("}}", after):
            after += 2
        else:
            raise TemplateSyntaxError("comment ends before closing delimiter")
        return None, after, trim
    tokens, end, trim = _lex_action(text, body_start)
    parser = _ActionParser(tokens)
    pipeline = parser.pipeline(top=True)
    return Action(pipeline), end, trim


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # field, dot, ident, string, number, lparen, rparen, pipe, var, other
    text: str


def _lex_action(text: str, pos: int) -> tuple[list[_Tok], int, bool]:
    """Split an action's body into tokens; returns them, the index after `}}`, and right trim."""
    toks: list[_Tok] = []
    n = len(text)
    while True:
        if pos >= n:
            raise TemplateSyntaxError("unclosed action")
        c = text[pos]
        if text.startswith("}}", pos):
            return toks, pos + 2, False
        if c in _SPACE:
            if text.startswith("-}}", pos + 1):
                return toks, pos + 4, True
            pos += 1
            continue
        if c == '"':
            end = pos + 1
            while end < n and text[end] != '"':
                if text[end] == "\n":
                    raise TemplateSyntaxError("unterminated quoted string")
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                raise TemplateSyntaxError("unterminated quoted string")
            toks.append(_Tok("string", text[pos : end + 1]))
            pos = end + 1
            continue
        if c == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise TemplateSyntaxError("unterminated raw quoted string")
            toks.append(_Tok("string", text[pos : end + 1]))
            pos = end + 1
            continue
        if c == "(":
            toks.append(_Tok("lparen", c))
            pos += 1
            continue
        if c == ")":
            toks.append(_Tok("rparen", c))
            pos += 1
            continue
        if c == "|":
            toks.append(_Tok("pipe", c))
            pos += 1
            continue
        end = pos + 1
        while end < n and (
            text[end].isalnum()
            or text[end] in "_.$"
            or (text[end] in "+-" and text[end - 1] in "eEpP" and c not in ".$")
        ):
            end += 1
        word = text[pos:end]
        if c == "." and len(word) == 1:
            toks.append(_Tok("dot", word))
        elif c == ".":
            toks.append(_Tok("field", word))
        elif c == "$":
            toks.append(_Tok("var", word))
        elif c.isdigit() or c in "+-":
            toks.append(_Tok("number", word))
        elif c.isalpha() or c == "_":
            toks.append(_Tok("ident", word))
        else:
            toks.append(_Tok("other", text[pos : pos + 1]))
            end = pos + 1
        pos = end


class _ActionParser:
    """Recursive descent over one action's tokens."""

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def pipeline(self, *, top: bool) -> Pipeline:
        commands: list[tuple[Arg, ...]] = []
        while True:
            cmd = self.command()
            if not cmd:
                raise TemplateSyntaxError("missing value for command")
            commands.append(cmd)
            tok = self.peek()
            if tok is not None and tok.kind == "pipe":
                self.i += 1
                continue
            break
        tok = self.peek()
        if top and tok is not None:
            raise TemplateSyntaxError(f"unexpected {tok.text!r} in command")
        for stage, cmd in enumerate(commands):
            head = cmd[0]
            if isinstance(head, Function):
                low, high = FUNCTIONS[head.name]
                got = len(cmd) - 1 + (1 if stage > 0 else 0)
                if got < low or (high >= 0 and got > high):
                    raise TemplateSyntaxError(
                        f"wrong number of args for {head.name}: want {_want(low, high)} got {got}"
                    )
            elif len(cmd) > 1:
                raise TemplateSyntaxError(f"can't give argument to non-function {_arg_str(head)}")
            elif stage > 0:
                raise TemplateSyntaxError(f"non executable command in pipeline stage {stage + 1}")
        return Pipeline(tuple(commands))

    def command(self) -> tuple[Arg, ...]:
        args: list[Arg] = []
        while True:
            tok = self.peek()
            if tok is None or tok.kind in ("pipe", "rparen"):
                return tuple(args)
            self.i += 1
            args.append(self.operand(tok, first=not args))

    def operand(self, tok: _Tok, *, first: bool) -> Arg:
        if tok.kind == "field":
            return _field(tok.text)
        if tok.kind == "string":
            return Literal(_unquote(tok.text), tok.text)
        if tok.kind == "number":
            return Literal(_number(tok.text), tok.text)
        if tok.kind == "lparen":
            inner = self.pipeline(top=False)
            close = self.peek()
            if close is None or close.kind != "rparen":
                raise TemplateSyntaxError("unclosed left paren")
            self.i += 1
            nxt = self.peek()
            if nxt is not None and nxt.kind in ("field", "dot"):
                raise TemplateSyntaxError("fields of a parenthesised pipeline are not supported")
            return inner
        if tok.kind == "ident":
            name = tok.text
            if name in KEYWORDS:
                raise TemplateSyntaxError(f"{{{{{name}}}}} is not supported")
            if name in FUNCTIONS:
                if not first:
                    raise TemplateSyntaxError(f"function {name} must come first in a command")
                return Function(name)
            if name in GO_BUILTINS or name in ("true", "false", "nil"):
                raise TemplateSyntaxError(f"{name} is not supported")
            raise TemplateSyntaxError(f'function "{name}" not defined')
        if tok.kind == "dot":
            raise TemplateSyntaxError("{{ . }} is not supported; use a field such as .Name")
        if tok.kind == "var":
            raise TemplateSyntaxError(f"variables ({tok.text}) are not supported")
        raise TemplateSyntaxError(f"unexpected {tok.text!r} in command")


def _want(low: int, high: int) -> str:
    if low == high:
        return str(low)
    return f"at least {low}" if high < 0 else f"{low} to {high}"


def _field(text: str) -> Field:
    path = tuple(text[1:].split("."))
    if any(not p or not (p[0].isalpha() or p[0] == "_") for p in path):
        raise TemplateSyntaxError(f"bad field {text}")
    root = path[0]
    if root in UNSUPPORTED_FIELDS:
        raise TemplateSyntaxError(f".{root} is not supported")
    if root not in FIELDS:
        raise TemplateSyntaxError(
            f"unknown field .{root} (supported: {', '.join('.' + f for f in sorted(FIELDS))})"
        )
    if len(path) > 2 or (len(path) == 2 and root != "Group"):
        raise TemplateSyntaxError(f"can't evaluate field {path[-1]} in {text}")
    return Field(path)


_GO_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def _unquote(raw: str) -> str:
    """Decode a Go string literal (interpreted or raw)."""
    if raw.startswith("`"):
        return raw[1:-1]
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        if width is not None:
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise TemplateSyntaxError(f"invalid syntax in string {raw}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
            continue
        if e in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise TemplateSyntaxError(f"invalid syntax in string {raw}")
            out.append(chr(int(digits, 8)))
            i += 4
            continue
        raise TemplateSyntaxError(f"invalid syntax in string {raw}")
    return "".join(out)


def _number(raw: str) -> int:
    text = raw.lstrip("+")
    digits = text.lstrip("-")
    try:
        if len(digits) > 1 and digits[0] == "0" and digits.isdigit():  # Go: 017 is octal
            return int(text.replace(digits, "0o" + digits[1:]), 0)
        value = int(text, 0)
    except ValueError:
        raise TemplateSyntaxError(f"only integer constants are supported, got {raw}") from None
    return value


# --- execution -----------------------------------------------------------------------------


def _eval_pipeline(pipe: Pipeline, data: TemplateData) -> Value:
    result: Value | None = None
    for cmd in pipe.commands:
        head = cmd[0]
        if isinstance(head, Function):
            args = [_eval_arg(a, data) for a in cmd[1:]]
            if result is not None:
                args.append(result)
            result = _call(head.name, args)
        else:
            result = _eval_arg(head, data)
    assert result is not None
    return result


def _eval_arg(arg: Arg, data: TemplateData) -> Value:
    if isinstance(arg, Literal):
        return arg.value
    if isinstance(arg, Pipeline):
        return _eval_pipeline(arg, data)
    if isinstance(arg, Field):
        value = data.field(arg.path[0])
        if len(arg.path) == 2:
            assert isinstance(value, Mapping)
            return value.get(arg.path[1], MISSING)
        return value
    raise TemplateExecError(f"can't evaluate {arg}")  # a bare function name as an argument


def _call(name: str, args: list[Value]) -> Value:
    for a in args:
        if isinstance(a, _Missing):
            raise TemplateExecError(f"error calling {name}: invalid value; expected string")
    try:
        if name == "index":
            return _index(args[0], args[1:])
        if name == "len":
            return _len(args[0])
        return _parse_int(args[0], args[1], args[2])
    except TemplateExecError as exc:
        raise TemplateExecError(f"error calling {name}: {exc}") from None


def _type_name(v: Value) -> str:
    if isinstance(v, str):
        return "string"
    if isinstance(v, int):
        return "int"
    if isinstance(v, tuple):
        return "[]string"
    return "map[string]string"


def _index(item: Value, indices: list[Value]) -> Value:
    for idx in indices:
        if isinstance(item, tuple | str):
            if not isinstance(idx, int):
                raise TemplateExecError(f"cannot index slice/array with type {_type_name(idx)}")
            if not 0 <= idx < len(item):
                raise TemplateExecError(f"index out of range: {idx}")
            item = item[idx] if isinstance(item, tuple) else ord(item[idx])
        elif isinstance(item, Mapping):
            if not isinstance(idx, str):
                raise TemplateExecError(f"value has type {_type_name(idx)}; should be string")
            item = item.get(idx, "")
        else:
            raise TemplateExecError(f"can't index item of type {_type_name(item)}")
    return item


def _len(item: Value) -> int:
    if isinstance(item, str | tuple | Mapping):
        return len(item)
    raise TemplateExecError(f"len of type {_type_name(item)}")


_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def _parse_int(s: Value, base: Value, bits: Value) -> int:
    """Go's strconv.ParseUint(s, base, bitSize)."""
    if not isinstance(s, str):
        raise TemplateExecError(f"wrong type for value; expected string; got {_type_name(s)}")
    if not isinstance(base, int) or not isinstance(bits, int):
        got = base if not isinstance(base, int) else bits
        raise TemplateExecError(f"wrong type for value; expected int; got {_type_name(got)}")
    syntax = TemplateExecError(f'strconv.ParseUint: parsing "{s}": invalid syntax')
    if not s:
        raise syntax
    text = s
    base0 = base == 0
    if base0:
        base = 10
        if text[0] == "0":
            lower = text[1:2].lower()
            if len(text) >= 3 and lower in ("b", "o", "x"):
                base = {"b": 2, "o": 8, "x": 16}[lower]
                text = text[2:]
            else:
                base = 8
                text = text[1:] or "0"
    elif not 2 <= base <= 36:
        raise TemplateExecError(f'strconv.ParseUint: parsing "{s}": invalid base {base}')
    if bits == 0:
        bits = 64
    elif not 0 < bits <= 64:
        raise TemplateExecError(f'strconv.ParseUint: parsing "{s}": invalid bit size {bits}')
    if base0 and "_" in text:
        if not _underscores_ok(s):
            raise syntax
        text = text.replace("_", "")
    if not text:
        raise syntax
    value = 0
    for ch in text.lower():
        d = _DIGITS.find(ch)
        if d < 0 or d >= base:
            raise syntax
        value = value * base + d
    if value >= 1 << bits:
        raise TemplateExecError(f'strconv.ParseUint: parsing "{s}": value out of range')
    return value


def _underscores_ok(s: str) -> bool:
    """Go's rule: underscores only between digits, or after a base prefix."""
    saw = "^"
    i = 0
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        hexa = s[1].lower() == "x"
        i = 2
        saw = "0"
    for ch in s[i:]:
        if ch.isdigit() or (hexa and ch.lower() in "abcdef"):
            saw = "0"
            continue
        if ch == "_":
            if saw != "0":
                return False
            saw = "_"
            continue
        if saw == "_":
            return False
        saw = "!"
    return saw != "_"
