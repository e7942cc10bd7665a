"""Parse tokens into server blocks: keys, `{ }` bodies, nested option blocks, snippets, imports.

The parser expands `import` (snippets, files, globs) in place as it walks the token stream, as
coredns/caddy does, so a snippet must be defined before it is imported. Directive names are
checked against the `known` set the caller passes in; the parser itself knows no plugin.
Nested option blocks are read with an explicit stack, so no Corefile can exhaust the Python
stack; only unquoted `{` / `}` tokens are structural.
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
    root_file: str
    """The name the top-level text's tokens carry."""
    root_path: str
    """Absolute path standing for the top-level text (for import-cycle detection)."""
    base_dir: str
    """Directory that relative imports in the top-level text are resolved against."""
    snippets: dict[str, list[Token]] = field(default_factory=dict)
    snippet_expansions: int = 0
    file_expansions: int = 0
    importer: dict[str, str] = field(default_factory=dict)
    """Absolute imported file -> absolute file whose import first brought it in."""
    warnings: list[str] = field(default_factory=list)


def parse_file(
    path: str, known: Container[str], *, display_name: str | None = None
) -> list[ServerBlock]:
    """Read and parse a Corefile from disk.

    Raises:
        CorefileError: the file cannot be read or does not parse.
    """
    name = display_name or path
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise CorefileError(
            f"cannot read Corefile: {exc.strerror or exc}", file=name, line=0
        ) from exc
    except UnicodeDecodeError as exc:
        raise CorefileError(f"Corefile is not valid UTF-8: {exc}", file=name, line=0) from exc
    absolute = os.path.abspath(path)
    return parse(text, name, known, base_dir=os.path.dirname(absolute), source_path=absolute)


def parse(
    text: str,
    file: str,
    known: Container[str],
    *,
    base_dir: str | None = None,
    warnings: list[str] | None = None,
    source_path: str | None = None,
) -> list[ServerBlock]:
    """Parse Corefile text into server blocks.

    Args:
        text: the Corefile contents.
        file: the name used in error messages (and whose directory anchors relative imports
            unless `base_dir` is given).
        known: directive names accepted at the top level of a block.
        base_dir: directory for relative imports of this text.
        warnings: if given, non-fatal findings (a glob matching nothing) are appended here,
            each starting with `file:line: `.
        source_path: the file the text was read from, if any (default: `file` inside
            `base_dir`); an import that leads back to it is an import cycle.

    Raises:
        CorefileError: the first syntax error, naming file and line.
    """
    base = os.path.abspath(base_dir) if base_dir else os.path.dirname(os.path.abspath(file))
    root_path = os.path.abspath(source_path or os.path.join(base, os.path.basename(file)))
    state = _State(root_file=file, root_path=root_path, base_dir=base)
    tokens = tokenize(text, file)
    blocks = _Parser(tokens, known, state).parse_all()
    if warnings is not None:
        warnings.extend(state.warnings)
    return blocks


def _is_open(tok: Token) -> bool:
    return tok.text == "{" and not tok.quoted


def _is_close(tok: Token) -> bool:
    return tok.text == "}" and not tok.quoted


def _is_snippet_key(text: str) -> bool:
    return text.startswith("(") and text.endswith(")") and len(text) >= 2


def _unmatched(tok: Token) -> CorefileError:
    return tok.error("Unexpected '}' because no matching opening brace")


@dataclass
class _Open:
    """A `{ }` option block being read: the line that opened it and the lines read so far."""

    opener: Token
    head: Token
    args: list[Token]
    lines: list[Directive] = field(default_factory=list)


class _Parser:
    def __init__(self, tokens: list[Token], known: Container[str], state: _State) -> None:
        self.toks = tokens
        # starts[k]: toks[k] begins a line whatever the line numbers say (the first token of an
        # import expansion, and the token after one; the import line always ends there).
        self.starts = [False] * len(tokens)
        self.i = 0
        self.known = known
        self.state = state
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
        if self.starts[self.i]:
            return True
        prev, cur = self.toks[self.i - 1], self.toks[self.i]
        return prev.file != cur.file or prev.line + prev.newlines < cur.line

    def eof_error(self) -> CorefileError:
        tok = self.last or (self.toks[-1] if self.toks else Token("", self.state.root_file, 1))
        return tok.error("Unexpected EOF")

    def expanded(self, tok: Token) -> Token:
        return tok.with_text(expand_env(tok.text))

    # -- top level ------------------------------------------------------------------------------
    def parse_all(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while not self.eof():
            tok = self.peek()
            if self.at_new_line() and expand_env(tok.text) == "import":
                self.expand_import()
                continue
            block = self.server_block()
            if block is not None:
                blocks.append(block)
        return blocks

    def server_block(self) -> ServerBlock | None:
        first = self.peek()
        keys = [k for k in self.keys() if k.text != ""]
        if len(keys) == 1 and _is_snippet_key(keys[0].text):
            self.snippet(keys[0])
            return None
        if not keys:
            if _is_open(first):
                raise first.error("server block has no keys")
            raise first.error(
                "server block has no keys (all keys were empty after {$ENV} expansion)"
            )
        braced = not self.eof() and _is_open(self.peek())
        if braced:
            self.take()
        return ServerBlock(tuple(keys), tuple(self.body(braced)))

    def keys(self) -> list[Token]:
        keys: list[Token] = []
        expecting_another = False
        while True:
            tok = self.peek()
            if _is_open(tok):
                if expecting_another:
                    raise tok.error("Expected another address but had '{' - check for extra comma")
                break
            if _is_close(tok):
                raise _unmatched(tok)
            self.take()
            key = self.expanded(tok)
            expecting_another = key.text.endswith(",")
            if expecting_another:
                key = key.with_text(key.text[:-1])
            keys.append(key)
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
        if self.eof() or not _is_open(self.peek()):
            raise key.error(f"snippet ({name}) must be followed by a '{{' block")
        self.take()
        depth = 1
        body: list[Token] = []
        while True:
            if self.eof():
                raise self.eof_error()
            tok = self.take()
            if _is_open(tok):
                depth += 1
            elif _is_close(tok):
                depth -= 1
                if depth == 0:
                    break
            body.append(tok)
        for idx in range(len(body) - 1):
            tok = body[idx]
            prev = body[idx - 1] if idx else None
            at_line_start = prev is None or prev.file != tok.file or prev.line != tok.line
            if at_line_start and tok.text == "import" and expand_env(body[idx + 1].text) == name:
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
            if _is_close(tok):
                if not braced:
                    raise _unmatched(tok)
                self.take()
                return directives
            if _is_open(tok):
                raise tok.error("Unexpected '{' where a directive was expected")
            if expand_env(tok.text) == "import":
                self.expand_import()
                continue
            directives.append(self.directive())

    def directive(self) -> Directive:
        name_tok = self.expanded(self.take())
        name = name_tok.text
        if name not in self.known:
            raise name_tok.error(f"Unknown directive '{name}'")
        args: list[Token] = []
        while not self.eof():
            tok = self.peek()
            if _is_open(tok):
                # Checked before the line end, so a `{` on the next line still opens the block.
                block = self.option_block(name_tok, args, name)
                if not self.eof() and not self.at_new_line():
                    tok = self.peek()
                    if _is_close(tok):
                        raise _unmatched(tok)
                    raise tok.error(f"unexpected '{tok.text}' after a closing '}}'", name)
                return Directive(name_tok, tuple(args), block, name)
            if self.at_new_line():
                break
            if _is_close(tok):
                raise _unmatched(tok)
            args.append(self.expanded(self.take()))
        return Directive(name_tok, tuple(args), None, name)

    def option_block(self, head: Token, args: list[Token], plugin: str) -> tuple[Directive, ...]:
        """Read the `{ }` block that the cursor is on (opened by line `head args`).

        Option lines end at the end of the line, at a `}` on the same line, or at a `{` that
        opens their own block; `import` at the start of a line expands in place.
        """
        stack = [_Open(self.take(), head, args)]
        line: tuple[Token, list[Token]] | None = None
        while True:
            top = stack[-1]
            if self.eof():
                raise top.opener.error("Unexpected EOF: missing '}'", plugin)
            tok = self.peek()
            if line is not None:
                if _is_open(tok):
                    stack.append(_Open(self.take(), line[0], line[1]))
                    line = None
                elif self.at_new_line() or _is_close(tok):
                    top.lines.append(Directive(line[0], tuple(line[1]), None, plugin))
                    line = None
                else:
                    line[1].append(self.expanded(self.take()))
                continue
            if _is_close(tok):
                self.take()
                stack.pop()
                if not stack:
                    return tuple(top.lines)
                parent = stack[-1]
                parent.lines.append(Directive(top.head, tuple(top.args), tuple(top.lines), plugin))
                if not self.eof() and not self.at_new_line() and not _is_close(self.peek()):
                    after = self.peek()
                    raise after.error(f"unexpected '{after.text}' after a closing '}}'", plugin)
                continue
            if _is_open(tok):
                raise tok.error("Unexpected '{' where an option was expected", plugin)
            if self.at_new_line() and expand_env(tok.text) == "import":
                self.expand_import()
                continue
            line = (self.expanded(self.take()), [])

    # -- import ---------------------------------------------------------------------------------
    def expand_import(self) -> None:
        imp = self.take()
        args: list[Token] = []
        while not self.eof() and not self.at_new_line():
            args.append(self.take())
        if not args:
            raise imp.error("Wrong argument count or unexpected line ending after 'import'")
        if len(args) > 1:
            raise args[1].error("Import takes only one argument (glob pattern or file)")
        target = expand_env(args[0].text)
        if target == "":
            raise args[0].error("Import requires a non-empty filepath")
        if target in self.state.snippets:
            if self.state.snippet_expansions >= MAX_SNIPPET_EXPANSIONS:
                raise imp.error(f"maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded")
            self.state.snippet_expansions += 1
            new = list(self.state.snippets[target])
        else:
            if self.state.file_expansions >= MAX_FILE_EXPANSIONS:
                raise imp.error(f"maximum file import depth ({MAX_FILE_EXPANSIONS}) exceeded")
            self.state.file_expansions += 1
            new = self.import_files(imp, target)
        self.splice(new)

    def splice(self, new: list[Token]) -> None:
        """Insert `new` at the cursor; it starts a line, and so does whatever follows it."""
        at = self.i
        self.toks[at:at] = new
        self.starts[at:at] = [False] * len(new)
        if new:
            self.starts[at] = True
        if at + len(new) < len(self.toks):
            self.starts[at + len(new)] = True

    def file_path(self, file: str) -> str:
        """The absolute path of a token's file (the top-level text stands for `root_path`)."""
        return self.state.root_path if file == self.state.root_file else os.path.abspath(file)

    def import_files(self, imp: Token, pattern: str) -> list[Token]:
        importing = self.file_path(imp.file)
        if imp.file == self.state.root_file:
            base = self.state.base_dir
        else:
            base = os.path.dirname(importing)
        if pattern.count("*") > 1 or pattern.count("?") > 1 or ("[" in pattern and "]" in pattern):
            raise imp.error(
                f"Glob pattern may only contain one wildcard (*), but has others: {pattern}"
            )
        if any(c in pattern for c in "*?"):
            full = pattern if os.path.isabs(pattern) else os.path.join(glob.escape(base), pattern)
            try:
                matches = sorted(glob.glob(full, include_hidden=True))
            except (OSError, ValueError) as exc:
                raise imp.error(f"Failed to use import pattern {pattern}: {exc}") from exc
            if not matches:
                self.state.warnings.append(
                    f"{imp.file}:{imp.line}: No files matching import glob pattern: {pattern}"
                )
        else:
            path = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
            if not os.path.exists(path):
                raise imp.error(f"File to import not found: {pattern}")
            matches = [path]
        out: list[Token] = []
        for match in matches:
            absolute = os.path.abspath(match)
            self.check_cycle(imp, importing, absolute)
            out.extend(self.read_import(imp, absolute))
        return out

    def check_cycle(self, imp: Token, importing: str, target: str) -> None:
        """Reject importing `target` from a file that `target` itself (transitively) imports."""
        seen: set[str] = set()
        cur: str | None = importing
        while cur is not None and cur not in seen:
            if cur == target:
                raise imp.error(f"import cycle: {target} is already being imported")
            seen.add(cur)
            cur = self.state.importer.get(cur)
        self.state.importer.setdefault(target, importing)

    def read_import(self, imp: Token, absolute: str) -> list[Token]:
        if os.path.isdir(absolute):
            raise imp.error(f"Could not import {absolute}: is a directory")
        try:
            with open(absolute, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise imp.error(f"Could not import {absolute}: {reason}") from exc
        toks = tokenize(text, absolute)
        if len(toks) > 1 and _is_snippet_key(toks[0].text):
            # A file of snippet definitions: define them now (so such a file may also be
            # imported inside a block), and splice in whatever else it holds.
            sub = _Parser(toks, self.known, self.state)
            rest: list[Token] = []
            while not sub.eof():
                key = sub.peek()
                if _is_snippet_key(key.text) and sub.at_new_line():
                    sub.take()
                    sub.snippet(key.with_text(expand_env(key.text)))
                else:
                    rest.append(sub.take())
            return rest
        return toks
