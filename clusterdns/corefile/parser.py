"""Parse tokens into server blocks: keys, `{ }` bodies, nested option blocks, snippets, imports.

The parser expands `import` (snippets, files, globs) in place as it walks the token stream, as
coredns/caddy does, so a snippet must be defined before it is imported. Directive names are
checked against the `known` set the caller passes in; the parser itself knows no plugin.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Container
from dataclasses import dataclass, field

from clusterdns.corefile.directive import Directive, ServerBlock
from clusterdns.corefile.lexer import Token, expand_env, tokenize
from clusterdns.errors import CorefileError

MAX_SNIPPET_EXPANSIONS = 10_000
MAX_FILE_EXPANSIONS = 100_000


@dataclass
class _State:
    snippets: dict[str, list[Token]] = field(default_factory=dict)
    snippet_expansions: int = 0
    file_expansions: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_file(path: str, known: Container[str], *, display_name: str | None = None) -> list[ServerBlock]:
    """Read and parse a Corefile from disk.

    Raises:
        CorefileError: the file cannot be read or does not parse.
    """
    name = display_name or path
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise CorefileError(f"cannot read Corefile: {exc.strerror or exc}", file=name, line=0) from exc
    except UnicodeDecodeError as exc:
        raise CorefileError(f"Corefile is not valid UTF-8: {exc}", file=name, line=0) from exc
    return parse(text, name, known, base_dir=os.path.dirname(os.path.abspath(path)))


def parse(
    text: str,
    file: str,
    known: Container[str],
    *,
    base_dir: str | None = None,
    warnings: list[str] | None = None,
) -> list[ServerBlock]:
    """Parse Corefile text into server blocks.

    Args:
        text: the Corefile contents.
        file: the name used in error messages (and whose directory anchors relative imports
            unless `base_dir` is given).
        known: directive names accepted at the top level of a block.
        base_dir: directory for relative imports of this text.
        warnings: if given, non-fatal findings (a glob matching nothing) are appended here.

    Raises:
        CorefileError: the first syntax error, naming file and line.
    """
    state = _State()
    tokens = tokenize(text, file)
    p = _Parser(tokens, known, state, base_dir or os.path.dirname(os.path.abspath(file)))
    blocks = p.parse_all()
    if warnings is not None:
        warnings.extend(state.warnings)
    return blocks


class _Parser:
    def __init__(self, tokens: list[Token], known: Container[str], state: _State, base_dir: str) -> None:
        self.toks = tokens
        self.i = 0
        self.known = known
        self.state = state
        self.base_dir = base_dir
        self.last: Token | None = None

    # -- cursor helpers -------------------------------------------------------------------------
    def eof(self) -> bool:
        return self.i >= len(self.toks)

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        self.last = tok
        return tok

    def at_new_line(self) -> bool:
        """Whether the token under the cursor starts a new line relative to the previous token."""
        if self.i == 0:
            return True
        if self.eof():
            return False
        prev, cur = self.toks[self.i - 1], self.toks[self.i]
        return prev.file != cur.file or prev.line + prev.newlines < cur.line

    def eof_error(self) -> CorefileError:
        tok = self.last or (self.toks[-1] if self.toks else Token("", "Corefile", 1))
        return tok.error("Unexpected EOF")

    # -- top level ------------------------------------------------------------------------------
    def parse_all(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while not self.eof():
            tok = self.peek()
            if tok.text == "import" and self.at_new_line():
                self.expand_import()
                continue
            block = self.server_block()
            if block is not None:
                blocks.append(block)
        return blocks

    def server_block(self) -> ServerBlock | None:
        first = self.peek()
        keys = self.keys()
        if len(keys) == 1 and keys[0].text.startswith("(") and keys[0].text.endswith(")"):
            self.snippet(keys[0])
            return None
        keys = [k for k in keys if k.text != ""]
        if not keys:
            raise first.error("server block has no keys (all keys were empty after {$ENV} expansion)")
        braced = not self.eof() and self.peek().text == "{"
        if braced:
            self.take()
        directives = self.body(braced)
        return ServerBlock(tuple(keys), tuple(directives))

    def keys(self) -> list[Token]:
        keys: list[Token] = []
        expecting_another = False
        while True:
            tok = self.peek()
            if tok.text == "{":
                if expecting_another:
                    raise tok.error("Expected another address but had '{' - check for extra comma")
                break
            if tok.text == "}":
                raise tok.error("Unexpected '}' because no matching opening brace")
            self.take()
            text = expand_env(tok.text)
            if text.endswith(","):
                text = text[:-1]
                expecting_another = True
            else:
                expecting_another = False
            keys.append(Token(text, tok.file, tok.line, tok.quoted, tok.newlines))
            if self.eof():
                if expecting_another:
                    raise self.eof_error()
                break
            if not expecting_another and self.at_new_line():
                break
        return keys

    def snippet(self, key: Token) -> None:
        name = key.text[1:-1]
        if name in self.state.snippets:
            raise key.error(f"redeclaration of previously declared snippet {name}")
        if self.eof() or self.peek().text != "{":
            raise key.error(f"snippet ({name}) must be followed by a '{{' block")
        self.take()
        depth = 1
        body: list[Token] = []
        while True:
            if self.eof():
                raise self.eof_error()
            tok = self.take()
            if tok.text == "{":
                depth += 1
            elif tok.text == "}":
                depth -= 1
                if depth == 0:
                    break
            body.append(tok)
        for idx, tok in enumerate(body):
            if tok.text == "import" and idx + 1 < len(body) and body[idx + 1].text == name:
                raise tok.error(f"a snippet cannot import itself: ({name})")
        self.state.snippets[name] = body

    # -- block bodies ---------------------------------------------------------------------------
    def body(self, braced: bool) -> list[Directive]:
        directives: list[Directive] = []
        while True:
            if self.eof():
                if braced:
                    raise self.eof_error()
                return directives
            tok = self.peek()
            if tok.text == "}":
                if not braced:
                    raise tok.error("Unexpected '}' because no matching opening brace")
                self.take()
                return directives
            if tok.text == "{":
                raise tok.error("Unexpected '{' where a directive was expected")
            if tok.text == "import" and self.at_new_line():
                self.expand_import()
                continue
            directives.append(self.directive())

    def directive(self) -> Directive:
        name_tok = self.take()
        name = expand_env(name_tok.text)
        if name not in self.known:
            raise name_tok.error(f"Unknown directive '{name}'")
        name_tok = Token(name, name_tok.file, name_tok.line, name_tok.quoted, name_tok.newlines)
        return self.line_rest(name_tok, plugin=name)

    def line_rest(self, head: Token, plugin: str) -> Directive:
        """Read the arguments of a line that started with `head`, and its optional block."""
        args: list[Token] = []
        while not self.eof():
            tok = self.peek()
            if tok.text == "{" and not tok.quoted:
                self.take()
                block = self.nested(plugin, tok)
                if not self.eof() and not self.at_new_line() and self.peek().text != "}":
                    raise self.peek().error(f"unexpected '{self.peek().text}' after a closing '}}'", plugin)
                return Directive(head, tuple(args), tuple(block), plugin)
            if self.at_new_line():
                break
            if tok.text == "}" and not tok.quoted:
                raise tok.error("Unexpected '}' because no matching opening brace")
            self.take()
            args.append(Token(expand_env(tok.text), tok.file, tok.line, tok.quoted, tok.newlines))
        return Directive(head, tuple(args), None, plugin)

    def nested(self, plugin: str, opener: Token) -> list[Directive]:
        lines: list[Directive] = []
        while True:
            if self.eof():
                raise opener.error("Unexpected EOF: missing '}'", plugin)
            tok = self.peek()
            if tok.text == "}" and not tok.quoted:
                self.take()
                return lines
            if tok.text == "{" and not tok.quoted:
                raise tok.error("Unexpected '{' where an option was expected", plugin)
            head = self.take()
            head = Token(expand_env(head.text), head.file, head.line, head.quoted, head.newlines)
            lines.append(self.line_rest_nested(head, plugin))

    def line_rest_nested(self, head: Token, plugin: str) -> Directive:
        """Like line_rest, but a `}` on the same line ends the enclosing block, not an error."""
        args: list[Token] = []
        while not self.eof():
            tok = self.peek()
            if tok.text == "{" and not tok.quoted:
                self.take()
                block = self.nested(plugin, tok)
                return Directive(head, tuple(args), tuple(block), plugin)
            if self.at_new_line() or (tok.text == "}" and not tok.quoted):
                break
            self.take()
            args.append(Token(expand_env(tok.text), tok.file, tok.line, tok.quoted, tok.newlines))
        return Directive(head, tuple(args), None, plugin)

    # -- import ---------------------------------------------------------------------------------
    def expand_import(self) -> None:
        imp = self.take()
        args: list[Token] = []
        while not self.eof() and not self.at_new_line():
            args.append(self.take())
        if len(args) != 1:
            raise imp.error("Import takes only one argument (glob pattern or file)")
        target = expand_env(args[0].text)
        if target in self.state.snippets:
            self.state.snippet_expansions += 1
            if self.state.snippet_expansions > MAX_SNIPPET_EXPANSIONS:
                raise imp.error(f"maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded")
            new = list(self.state.snippets[target])
        else:
            new = self.import_files(imp, target)
        self.toks[self.i : self.i] = new

    def import_files(self, imp: Token, pattern: str) -> list[Token]:
        base = os.path.dirname(os.path.abspath(imp.file)) if os.path.isabs(imp.file) else self.base_dir
        path = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if pattern.count("*") > 1 or pattern.count("?") > 1 or ("[" in pattern and "]" in pattern):
            raise imp.error(f"Glob pattern may only contain one wildcard (*), but has others: {pattern}")
        if any(c in pattern for c in "*?"):
            matches = sorted(glob.glob(path))
            if not matches:
                self.state.warnings.append(f"No files matching import glob pattern: {pattern}")
        else:
            if not os.path.exists(path):
                raise imp.error(f"File to import not found: {pattern}")
            matches = [path]
        out: list[Token] = []
        for match in matches:
            self.state.file_expansions += 1
            if self.state.file_expansions > MAX_FILE_EXPANSIONS:
                raise imp.error(f"maximum file import count ({MAX_FILE_EXPANSIONS}) exceeded")
            absolute = os.path.abspath(match)
            try:
                with open(absolute, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise imp.error(f"Could not import {pattern}: {exc}") from exc
            toks = tokenize(text, absolute)
            if toks and toks[0].text.startswith("(") and toks[0].text.endswith(")") and len(toks) > 1:
                # A file of snippet definitions: parse them into the shared table.
                sub = _Parser(toks, self.known, self.state, os.path.dirname(absolute))
                rest: list[Token] = []
                while not sub.eof():
                    key = sub.peek()
                    if key.text.startswith("(") and key.text.endswith(")") and sub.at_new_line():
                        sub.take()
                        sub.snippet(key)
                    else:
                        rest.append(sub.take())
                out.extend(rest)
            else:
                out.extend(toks)
        return out
