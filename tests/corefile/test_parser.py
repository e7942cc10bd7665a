"""Corefile parser: table-driven structure and error cases, imports, env vars, fuzzing.

A parsed Corefile is compared as a small text dump, one line per block key line and per
directive/option line, each prefixed with its line number (and the file's base name when the
line came from an imported file); nested blocks are indented. Errors are compared as the full
message, `file:line: ` prefix included.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterdns.chain.order import DIRECTIVES
from clusterdns.corefile import Directive, ServerBlock, Token, parse, parse_file, tokenize
from clusterdns.corefile import parser as parser_module
from clusterdns.dnsutil.zones import parse_key
from clusterdns.errors import CorefileError

ROOT = "Corefile"


def cf(text: str) -> str:
    """Dedent a triple-quoted Corefile; its first line is line 1."""
    return textwrap.dedent(text).lstrip("\n")


def show(tok: Token) -> str:
    """A token in a dump: quoted (newlines as \\n) when it was quoted or would be ambiguous."""
    text = tok.text
    if tok.quoted or text == "" or any(c.isspace() for c in text):
        return '"' + text.replace("\n", "\\n") + '"'
    return text


def where(tok: Token) -> str:
    return str(tok.line) if tok.file == ROOT else f"{os.path.basename(tok.file)}:{tok.line}"


def dump(blocks: list[ServerBlock]) -> str:
    out: list[str] = []

    def line(d: Directive, depth: int) -> None:
        text = "  " * depth + f"{where(d.token)}: " + " ".join([d.name, *map(show, d.args)])
        if d.block is None:
            out.append(text)
            return
        out.append(text + " {")
        for child in d.block:
            line(child, depth + 1)
        out.append("  " * depth + "}")

    for block in blocks:
        out.append(f"{where(block.keys[0])}: " + " ".join(show(k) for k in block.keys))
        for d in block.directives:
            line(d, 1)
    return "\n".join(out)


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{dir}", str(root)), encoding="utf-8")


def run_parse(text: str, tmp_path: Path, warnings: list[str] | None = None) -> list[ServerBlock]:
    return parse(
        text.replace("{dir}", str(tmp_path)),
        ROOT,
        DIRECTIVES,
        base_dir=str(tmp_path),
        warnings=warnings,
    )


def set_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def assert_located(exc: CorefileError) -> None:
    """Every error starts with `file:line: ` and names a real line."""
    assert str(exc).startswith(f"{exc.file}:{exc.line}: ")
    assert exc.line >= 1


# -- valid Corefiles -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ParseCase:
    name: str
    corefile: str
    expect: str
    """The dump (see module docstring); dedented and stripped before comparing."""
    env: Mapping[str, str | None] = field(default_factory=dict)
    """Environment for the parse; None unsets the variable."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Files written under the import base directory (`{dir}` in texts is that directory)."""
    warnings: tuple[str, ...] = ()

    def id(self) -> str:
        return self.name


KUBEADM = cf("""
    .:53 {
        errors
        health {
           lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
           ttl 30
        }
        prometheus :9153
        forward . /etc/resolv.conf {
           max_concurrent 1000
        }
        cache 30 {
           disable success cluster.local
           disable denial cluster.local
        }
        loop
        reload
        loadbalance
    }
""")

SPEC_A = cf("""
    # (a) env var in a key, comment after code
    cluster.local {$EXTRA_ZONE} {          # EXTRA_ZONE unset -> the key list is just cluster.local
        kubernetes                         # no zones given: the plugin uses the block's keys
    }
""")

SPEC_B = cf("""
    # (b) snippet and import
    (common) {
        errors
        log
    }
    .:1053 {
        import common
        forward . 8.8.8.8
    }
""")

SPEC_C = cf("""
    # (c) CIDR key: this block serves cluster.local., 0.0.10.in-addr.arpa. and 1.0.10.in-addr.arpa.
    10.0.0.0/23 cluster.local {
        kubernetes                         # all three zones; cluster.local. is the primary zone
    }
""")

PARSE_CASES = [
    # -- structure ---------------------------------------------------------------------------
    ParseCase(name="empty", corefile="", expect=""),
    ParseCase(name="only-comments", corefile="# nothing\n   # here\n\n", expect=""),
    ParseCase(
        name="minimal",
        corefile=". {\n    whoami\n}\n",
        expect="""
            1: .
              2: whoami
        """,
    ),
    ParseCase(
        name="kubeadm-reference",
        corefile=KUBEADM,
        expect="""
            1: .:53
              2: errors
              3: health {
                4: lameduck 5s
              }
              6: ready
              7: kubernetes cluster.local in-addr.arpa ip6.arpa {
                8: pods insecure
                9: fallthrough in-addr.arpa ip6.arpa
                10: ttl 30
              }
              12: prometheus :9153
              13: forward . /etc/resolv.conf {
                14: max_concurrent 1000
              }
              16: cache 30 {
                17: disable success cluster.local
                18: disable denial cluster.local
              }
              20: loop
              21: reload
              22: loadbalance
        """,
    ),
    ParseCase(
        name="several-keys-first-line",
        corefile="example.org example.net:1053 dns://.:53 {\n    whoami\n}\n",
        expect="""
            1: example.org example.net:1053 dns://.:53
              2: whoami
        """,
    ),
    ParseCase(
        name="comma-continues-keys",
        corefile=cf("""
            example.org,
              example.net,
            example.com {
                whoami
            }
        """),
        expect="""
            1: example.org example.net example.com
              4: whoami
        """,
    ),
    ParseCase(
        name="comma-mid-line-and-glued",
        corefile="example.org, example.net a.org,b.org {\n    whoami\n}\n",
        expect="""
            1: example.org example.net a.org,b.org
              2: whoami
        """,
    ),
    ParseCase(
        name="brace-on-line-after-keys",
        corefile="example.org\n{\n    whoami\n}\n",
        expect="""
            1: example.org
              3: whoami
        """,
    ),
    ParseCase(
        name="single-block-without-braces",
        corefile=".:53\nwhoami\nlog\n",
        expect="""
            1: .:53
              2: whoami
              3: log
        """,
    ),
    ParseCase(name="keys-only", corefile=".:53\n", expect="1: .:53"),
    ParseCase(name="empty-block", corefile=". {\n}\n", expect="1: ."),
    ParseCase(
        name="directive-on-the-brace-line",
        corefile=". { whoami\n    log\n}\n",
        expect="""
            1: .
              1: whoami
              2: log
        """,
    ),
    ParseCase(
        name="several-blocks-and-a-block-after-a-brace",
        corefile=cf("""
            example.org {
                whoami
            } example.net {
                log
            }
            .:1053 {
            }
        """),
        expect="""
            1: example.org
              2: whoami
            3: example.net
              4: log
            6: .:1053
        """,
    ),
    ParseCase(
        name="repeated-directives-keep-order",
        corefile=". {\n    log\n    forward . 1.1.1.1\n    log {class error}\n}\n",
        expect="""
            1: .
              2: log
              3: forward . 1.1.1.1
              4: log {class error}
        """,
    ),
    ParseCase(
        name="option-blocks-two-deep",
        corefile=cf("""
            . {
                kubernetes cluster.local {
                    outer a {
                        inner b c
                        inner2
                    }
                    after 1
                }
                whoami
            }
        """),
        expect="""
            1: .
              2: kubernetes cluster.local {
                3: outer a {
                  4: inner b c
                  5: inner2
                }
                7: after 1
              }
              9: whoami
        """,
    ),
    ParseCase(
        name="one-line-option-blocks",
        corefile=cf("""
            . {
                forward . 8.8.8.8 { max_fails 3 }
                template IN A { match x { y } }
                hosts { fallthrough
                }
            }
        """),
        expect="""
            1: .
              2: forward . 8.8.8.8 {
                2: max_fails 3
              }
              3: template IN A {
                3: match x {
                  3: y
                }
              }
              4: hosts {
                4: fallthrough
              }
        """,
    ),
    ParseCase(
        name="brace-on-line-after-directive",
        corefile=cf("""
            . {
                forward . 8.8.8.8
                {
                    max_fails 3
                }
                whoami
            }
        """),
        expect="""
            1: .
              2: forward . 8.8.8.8 {
                4: max_fails 3
              }
              6: whoami
        """,
    ),
    ParseCase(
        name="empty-option-block-is-not-no-block",
        corefile=". {\n    forward . 1.1.1.1 {\n    }\n    cache\n}\n",
        expect="""
            1: .
              2: forward . 1.1.1.1 {
              }
              4: cache
        """,
    ),
    # -- tokens --------------------------------------------------------------------------------
    ParseCase(
        name="comments-anywhere-outside-quotes",
        corefile=cf("""
            # leading comment
            .:53 { # after the brace
                whoami# glued to a word
                log "#not a comment" # a real one
                # a whole line
            }
        """),
        expect="""
            2: .:53
              3: whoami
              4: log "#not a comment"
        """,
    ),
    ParseCase(
        name="multi-line-quoted-string",
        corefile=cf("""
            . {
                log . "{remote} -
            {name}"
                whoami
            }
        """),
        expect="""
            1: .
              2: log . "{remote} -\\n{name}"
              4: whoami
        """,
    ),
    ParseCase(
        name="tokens-after-multi-line-quote-stay-on-its-line",
        corefile='. {\n    log . "a\nb" {combined}\n    whoami\n}\n',
        expect="""
            1: .
              2: log . "a\\nb" {combined}
              4: whoami
        """,
    ),
    ParseCase(
        name="quoted-braces-are-not-structural",
        corefile=cf("""
            . {
                template IN A {
                    answer "{"
                    answer "}"
                }
            }
        """),
        expect="""
            1: .
              2: template IN A {
                3: answer "{"
                4: answer "}"
              }
        """,
    ),
    ParseCase(
        name="quotes-inside-a-word-are-literal",
        corefile='. {\n    log a"b c"d\n}\n',
        expect="""
            1: .
              2: log a"b c"d
        """,
    ),
    ParseCase(
        name="closing-quote-ends-the-token",
        corefile='. {\n    log "a"b ""\n}\n',
        expect="""
            1: .
              2: log "a" b ""
        """,
    ),
    ParseCase(
        name="crlf-bom-and-lone-cr",
        corefile="\ufeff.:53 {\r\n    who\rami\r\n}\r\n",
        expect="""
            1: .:53
              2: whoami
        """,
    ),
    ParseCase(
        name="unicode-spaces-separate",
        corefile=". {\n\tlog\u00a0.\u2003x\v\n}\n",
        expect="""
            1: .
              2: log . x
        """,
    ),
    ParseCase(
        name="import-as-an-argument-is-literal",
        corefile=". {\n    forward . import x\n}\n",
        expect="""
            1: .
              2: forward . import x
        """,
    ),
    # -- spec §3.9 -----------------------------------------------------------------------------
    ParseCase(
        name="spec-a-env-unset",
        corefile=SPEC_A,
        env={"EXTRA_ZONE": None},
        expect="""
            2: cluster.local
              3: kubernetes
        """,
    ),
    ParseCase(
        name="spec-a-env-set",
        corefile=SPEC_A,
        env={"EXTRA_ZONE": "example.org"},
        expect="""
            2: cluster.local example.org
              3: kubernetes
        """,
    ),
    ParseCase(
        name="spec-b-snippet",
        corefile=SPEC_B,
        expect="""
            6: .:1053
              3: errors
              4: log
              8: forward . 8.8.8.8
        """,
    ),
    ParseCase(
        name="spec-c-cidr-key",
        corefile=SPEC_C,
        expect="""
            2: 10.0.0.0/23 cluster.local
              3: kubernetes
        """,
    ),
    # -- environment variables -----------------------------------------------------------------
    ParseCase(
        name="env-in-key-and-argument-both-syntaxes",
        corefile=".:{$CDNS_PORT} {\n    prometheus localhost:{%CDNS_PORT%}\n}\n",
        env={"CDNS_PORT": "9153"},
        expect="""
            1: .:9153
              2: prometheus localhost:9153
        """,
    ),
    ParseCase(
        name="env-value-is-not-split",
        corefile=". {\n    forward . {$CDNS_UPSTREAMS}\n}\n",
        env={"CDNS_UPSTREAMS": "8.8.8.8 1.1.1.1"},
        expect="""
            1: .
              2: forward . "8.8.8.8 1.1.1.1"
        """,
    ),
    ParseCase(
        name="env-unset-argument-stays-empty-key-is-dropped",
        corefile="{$CDNS_UNSET} . {$CDNS_UNSET} {\n    log {$CDNS_UNSET}\n}\n",
        env={"CDNS_UNSET": None},
        expect="""
            1: .
              2: log ""
        """,
    ),
    ParseCase(
        name="env-in-directive-and-option-names",
        corefile=cf("""
            . {
                {$CDNS_PLUGIN}
                forward . 1.1.1.1 {
                    {$CDNS_OPT} {%CDNS_N%}
                }
            }
        """),
        env={"CDNS_PLUGIN": "whoami", "CDNS_OPT": "max_fails", "CDNS_N": "3"},
        expect="""
            1: .
              2: whoami
              3: forward . 1.1.1.1 {
                4: max_fails 3
              }
        """,
    ),
    ParseCase(
        name="env-in-quoted-token",
        corefile='. {\n    log . "{$CDNS_A} and {%CDNS_A%}"\n}\n',
        env={"CDNS_A": "x"},
        expect="""
            1: .
              2: log . "x and x"
        """,
    ),
    ParseCase(
        name="go-template-collision-unset",
        corefile=cf("""
            . {
                template IN A {
                    answer "{{$x}} 60 IN A 10.0.0.1" {{ $x }}
                }
            }
        """),
        env={"x": None},
        expect="""
            1: .
              2: template IN A {
                3: answer "{} 60 IN A 10.0.0.1" {{ $x }}
              }
        """,
    ),
    ParseCase(
        name="go-template-collision-set",
        corefile='. {\n    template IN A {\n        answer "{{$x}} 60 IN A 10.0.0.1"\n    }\n}\n',
        env={"x": "boo"},
        expect="""
            1: .
              2: template IN A {
                3: answer "{boo} 60 IN A 10.0.0.1"
              }
        """,
    ),
    ParseCase(
        name="env-edge-forms-stay-literal",
        corefile=". {\n    log {$} {$CDNS_A {%} {%%} {%CDNS_A%}{$CDNS_A}\n}\n",
        env={"CDNS_A": "v"},
        expect="""
            1: .
              2: log {$} {$CDNS_A {%} {%%} vv
        """,
    ),
    ParseCase(
        name="env-values-are-not-expanded-again",
        corefile=". {\n    log {$CDNS_REF}\n}\n",
        env={"CDNS_REF": "{$CDNS_REF}", "CDNS_OTHER": "no"},
        expect="""
            1: .
              2: log {$CDNS_REF}
        """,
    ),
    # -- snippets ------------------------------------------------------------------------------
    ParseCase(
        name="snippet-imported-in-two-blocks",
        corefile=cf("""
            (common) {
                errors
            }
            example.org {
                import common
            }
            example.net {
                import common
                log
            }
        """),
        expect="""
            4: example.org
              2: errors
            7: example.net
              2: errors
              9: log
        """,
    ),
    ParseCase(
        name="snippet-brace-on-next-line-and-empty-snippet",
        corefile=cf("""
            (s)
            {
                whoami
            }
            (empty) {
            }
            . {
                import empty
                import s
            }
        """),
        expect="""
            7: .
              3: whoami
        """,
    ),
    ParseCase(
        name="snippet-holding-a-whole-server-block",
        corefile=cf("""
            (server) {
                example.org {
                    whoami
                }
            }
            import server
            . {
                log
            }
        """),
        expect="""
            2: example.org
              3: whoami
            7: .
              8: log
        """,
    ),
    ParseCase(
        name="snippet-importing-a-snippet",
        corefile=cf("""
            (base) {
                errors
            }
            (full) {
                import base
                log
            }
            . {
                import full
            }
        """),
        expect="""
            8: .
              2: errors
              6: log
        """,
    ),
    ParseCase(
        name="snippet-inside-an-option-block",
        corefile=cf("""
            (opts) {
                max_fails 3
                expire 10s
            }
            . {
                forward . 8.8.8.8 {
                    import opts
                    policy sequential
                }
            }
        """),
        expect="""
            5: .
              6: forward . 8.8.8.8 {
                2: max_fails 3
                3: expire 10s
                8: policy sequential
              }
        """,
    ),
    ParseCase(
        name="import-on-the-brace-line",
        corefile="(common) {\n    errors\n}\n. { import common\n    log\n}\n",
        expect="""
            4: .
              2: errors
              5: log
        """,
    ),
    ParseCase(
        name="snippet-name-from-env",
        corefile="(common) {\n    errors\n}\n. {\n    import {$CDNS_SNIP}\n}\n",
        env={"CDNS_SNIP": "common"},
        expect="""
            4: .
              2: errors
        """,
    ),
    # -- file imports (relative to the importing file) -----------------------------------------
    ParseCase(
        name="file-import-relative-to-importing-file",
        corefile=". {\n    import conf/main.conf\n    whoami\n}\n",
        files={
            "conf/main.conf": "errors\nimport sub/extra.conf\n",
            "conf/sub/extra.conf": "# extra\nlog\n",
            "sub/extra.conf": "ready\n",  # a decoy next to the Corefile: must not be used
        },
        expect="""
            1: .
              main.conf:1: errors
              extra.conf:2: log
              3: whoami
        """,
    ),
    ParseCase(
        name="file-import-absolute-path",
        corefile=". {\n    import {dir}/abs.conf\n}\n",
        files={"abs.conf": "errors\n"},
        expect="""
            1: .
              abs.conf:1: errors
        """,
    ),
    ParseCase(
        name="file-import-of-whole-blocks-at-top-level",
        corefile="import blocks.conf\n. {\n    log\n}\n",
        files={"blocks.conf": "example.org {\n    whoami\n}\n"},
        expect="""
            blocks.conf:1: example.org
              blocks.conf:2: whoami
            2: .
              3: log
        """,
    ),
    ParseCase(
        name="file-import-inside-option-block",
        corefile=". {\n    forward . 1.1.1.1 {\n        import fwd.conf\n    }\n}\n",
        files={"fwd.conf": "max_fails 2\nexpire 5s\n"},
        expect="""
            1: .
              2: forward . 1.1.1.1 {
                fwd.conf:1: max_fails 2
                fwd.conf:2: expire 5s
              }
        """,
    ),
    ParseCase(
        name="snippet-file-imported-at-top-level",
        corefile="import snippets.conf\n. {\n    import common\n}\n",
        files={"snippets.conf": "(common) {\n    errors\n}\n"},
        expect="""
            2: .
              snippets.conf:2: errors
        """,
    ),
    ParseCase(
        name="snippet-file-imported-inside-a-block",
        corefile=". {\n    import snippets.conf\n    import common\n    log\n}\n",
        files={"snippets.conf": "(common) {\n    errors\n}\n(other) {\n    whoami\n}\n"},
        expect="""
            1: .
              snippets.conf:2: errors
              4: log
        """,
    ),
    ParseCase(
        name="glob-import-sorted-hidden-included",
        corefile=". {\n    import conf.d/*.conf\n}\n",
        files={
            "conf.d/b.conf": "log\n",
            "conf.d/a.conf": "errors\n",
            "conf.d/.hidden.conf": "ready\n",
            "conf.d/skip.txt": "whoami\n",
        },
        expect="""
            1: .
              .hidden.conf:1: ready
              a.conf:1: errors
              b.conf:1: log
        """,
    ),
    ParseCase(
        name="glob-import-question-mark",
        corefile=". {\n    import conf.d/?.conf\n}\n",
        files={"conf.d/a.conf": "errors\n", "conf.d/bb.conf": "log\n"},
        expect="""
            1: .
              a.conf:1: errors
        """,
    ),
    ParseCase(
        name="glob-import-without-match-only-warns",
        corefile=". {\n    whoami\n    import none.d/*.conf\n}\n",
        expect="""
            1: .
              2: whoami
        """,
        warnings=("Corefile:3: No files matching import glob pattern: none.d/*.conf",),
    ),
    ParseCase(
        name="same-file-imported-twice-is-not-a-cycle",
        corefile=". {\n    import a.conf\n    import b.conf\n}\n",
        files={"a.conf": "import c.conf\n", "b.conf": "import c.conf\n", "c.conf": "log\n"},
        expect="""
            1: .
              c.conf:1: log
              c.conf:1: log
        """,
    ),
]


@pytest.mark.parametrize("case", PARSE_CASES, ids=ParseCase.id)
def test_parse(case: ParseCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, case.env)
    write_files(tmp_path, case.files)
    warnings: list[str] = []
    blocks = run_parse(case.corefile, tmp_path, warnings)
    assert dump(blocks) == textwrap.dedent(case.expect).strip()
    assert warnings == list(case.warnings)


# -- invalid Corefiles ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ErrorCase:
    name: str
    corefile: str
    error: str
    """The full message; `{dir}` stands for the import base directory."""
    env: Mapping[str, str | None] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    def id(self) -> str:
        return self.name


GLOB_ERR = "Corefile:2: Glob pattern may only contain one wildcard (*), but has others: "

ERROR_CASES = [
    ErrorCase(
        name="unknown-directive",
        corefile=". {\n    whoami\n    foo\n}\n",
        error="Corefile:3: Unknown directive 'foo'",
    ),
    ErrorCase(
        name="unknown-directive-from-env",
        corefile=". {\n    {$CDNS_PLUGIN} x\n}\n",
        env={"CDNS_PLUGIN": "nosuch"},
        error="Corefile:2: Unknown directive 'nosuch'",
    ),
    ErrorCase(
        name="unknown-directive-in-unbraced-block",
        corefile=".\nwhoami\nexample.org {\n}\n",
        error="Corefile:3: Unknown directive 'example.org'",
    ),
    ErrorCase(
        name="quoted-close-brace-is-a-word",
        corefile='. {\n    "}"\n}\n',
        error="Corefile:2: Unknown directive '}'",
    ),
    ErrorCase(
        name="python-only-whitespace-does-not-separate",
        corefile=". {\n    whoami\x1cx\n}\n",
        error="Corefile:2: Unknown directive 'whoami\x1cx'",
    ),
    ErrorCase(
        name="unterminated-quote",
        corefile='. {\n    log "abc\n}\n',
        error="Corefile:2: unterminated quoted string",
    ),
    ErrorCase(
        name="escaped-quote-does-not-close",
        corefile='. {\n    log "abc\\"\n}\n',
        error="Corefile:2: unterminated quoted string",
    ),
    ErrorCase(
        name="eof-in-server-block",
        corefile=". {\n    whoami\n",
        error="Corefile:2: Unexpected EOF",
    ),
    ErrorCase(
        name="eof-in-option-block",
        corefile=". {\n    forward . 1.1.1.1 {\n        max_fails 3\n",
        error="Corefile:2: forward: Unexpected EOF: missing '}'",
    ),
    ErrorCase(
        name="eof-in-second-level-option-block",
        corefile=". {\n    template IN A {\n        match x {\n            y\n",
        error="Corefile:3: template: Unexpected EOF: missing '}'",
    ),
    ErrorCase(
        name="eof-after-key-comma",
        corefile="example.org,",
        error="Corefile:1: Unexpected EOF",
    ),
    ErrorCase(
        name="unmatched-close-brace-at-top-level",
        corefile=". {\n    whoami\n}\n}\n",
        error="Corefile:4: Unexpected '}' because no matching opening brace",
    ),
    ErrorCase(
        name="unmatched-close-brace-in-unbraced-block",
        corefile=".\nwhoami\n}\n",
        error="Corefile:3: Unexpected '}' because no matching opening brace",
    ),
    ErrorCase(
        name="one-line-server-block",
        corefile=". { whoami }\n",
        error="Corefile:1: Unexpected '}' because no matching opening brace",
    ),
    ErrorCase(
        name="close-brace-on-directive-line-after-option-block",
        corefile=". {\n    forward . 1.1.1.1 { max_fails 3 } }\n",
        error="Corefile:2: Unexpected '}' because no matching opening brace",
    ),
    ErrorCase(
        name="word-after-option-block",
        corefile=". {\n    forward . 1.1.1.1 {\n        max_fails 3\n    } extra\n}\n",
        error="Corefile:4: forward: unexpected 'extra' after a closing '}'",
    ),
    ErrorCase(
        name="word-after-nested-option-block",
        corefile=". {\n    template IN A {\n        match x { y } z\n    }\n}\n",
        error="Corefile:3: template: unexpected 'z' after a closing '}'",
    ),
    ErrorCase(
        name="brace-where-directive-expected",
        corefile=". {\n    {\n    }\n}\n",
        error="Corefile:2: Unexpected '{' where a directive was expected",
    ),
    ErrorCase(
        name="brace-where-option-expected",
        corefile=". {\n    forward . 1.1.1.1 {\n        {\n        }\n    }\n}\n",
        error="Corefile:3: forward: Unexpected '{' where an option was expected",
    ),
    ErrorCase(
        name="extra-comma-in-keys",
        corefile="example.org, {\n    whoami\n}\n",
        error="Corefile:1: Expected another address but had '{' - check for extra comma",
    ),
    ErrorCase(
        name="block-without-keys",
        corefile="{\n    whoami\n}\n",
        error="Corefile:1: server block has no keys",
    ),
    ErrorCase(
        name="all-keys-empty-after-env",
        corefile="{$CDNS_UNSET} {\n    whoami\n}\n",
        env={"CDNS_UNSET": None},
        error="Corefile:1: server block has no keys (all keys were empty after {$ENV} expansion)",
    ),
    # -- import --------------------------------------------------------------------------------
    ErrorCase(
        name="import-without-argument",
        corefile=". {\n    import\n}\n",
        error="Corefile:2: Wrong argument count or unexpected line ending after 'import'",
    ),
    ErrorCase(
        name="import-with-two-arguments",
        corefile=". {\n    import a b\n}\n",
        error="Corefile:2: Import takes only one argument (glob pattern or file)",
    ),
    ErrorCase(
        name="top-level-import-without-argument",
        corefile="import\n",
        error="Corefile:1: Wrong argument count or unexpected line ending after 'import'",
    ),
    ErrorCase(
        name="import-of-empty-env",
        corefile=". {\n    import {$CDNS_UNSET}\n}\n",
        env={"CDNS_UNSET": None},
        error="Corefile:2: Import requires a non-empty filepath",
    ),
    ErrorCase(
        name="glob-with-two-stars",
        corefile=". {\n    import */*.conf\n}\n",
        error=GLOB_ERR + "*/*.conf",
    ),
    ErrorCase(
        name="glob-with-two-question-marks",
        corefile=". {\n    import a??.conf\n}\n",
        error=GLOB_ERR + "a??.conf",
    ),
    ErrorCase(
        name="glob-with-character-class",
        corefile=". {\n    import [ab].conf\n}\n",
        error=GLOB_ERR + "[ab].conf",
    ),
    ErrorCase(
        name="missing-file",
        corefile=". {\n    whoami\n    import nope.conf\n}\n",
        error="Corefile:3: File to import not found: nope.conf",
    ),
    ErrorCase(
        name="missing-file-relative-to-imported-file",
        corefile=". {\n    import conf/a.conf\n}\n",
        files={"conf/a.conf": "log\nimport b.conf\n", "b.conf": "errors\n"},
        error="{dir}/conf/a.conf:2: File to import not found: b.conf",
    ),
    ErrorCase(
        name="import-of-a-directory",
        corefile=". {\n    import sub\n}\n",
        files={"sub/x.conf": "log\n"},
        error="Corefile:2: Could not import {dir}/sub: is a directory",
    ),
    ErrorCase(
        name="unknown-directive-in-imported-file",
        corefile=". {\n    import bad.conf\n}\n",
        files={"bad.conf": "whoami\nfoo\n"},
        error="{dir}/bad.conf:2: Unknown directive 'foo'",
    ),
    ErrorCase(
        name="unterminated-quote-in-imported-file",
        corefile=". {\n    import bad.conf\n}\n",
        files={"bad.conf": 'log "x\n'},
        error="{dir}/bad.conf:1: unterminated quoted string",
    ),
    ErrorCase(
        name="error-in-file-imported-through-glob",
        corefile=". {\n    import conf.d/*\n}\n",
        files={"conf.d/a": "log\n", "conf.d/b": "\n\nnosuch\n"},
        error="{dir}/conf.d/b:3: Unknown directive 'nosuch'",
    ),
    ErrorCase(
        name="file-imports-itself",
        corefile=". {\n    import loop.conf\n}\n",
        files={"loop.conf": "log\nimport loop.conf\n"},
        error="{dir}/loop.conf:2: import cycle: {dir}/loop.conf is already being imported",
    ),
    ErrorCase(
        name="files-import-each-other",
        corefile=". {\n    import a.conf\n}\n",
        files={"a.conf": "import b.conf\n", "b.conf": "log\nimport a.conf\n"},
        error="{dir}/b.conf:2: import cycle: {dir}/a.conf is already being imported",
    ),
    ErrorCase(
        name="glob-matching-the-corefile-itself",
        corefile=". {\n    import Core*\n}\n",
        files={"Corefile": ". {\n    import Core*\n}\n"},
        error="Corefile:2: import cycle: {dir}/Corefile is already being imported",
    ),
    # -- snippets ------------------------------------------------------------------------------
    ErrorCase(
        name="snippet-redefined",
        corefile="(common) {\n    errors\n}\n(common) {\n    log\n}\n",
        error="Corefile:4: redeclaration of previously declared snippet common",
    ),
    ErrorCase(
        name="snippet-imports-itself",
        corefile="(loop) {\n    errors\n    import loop\n}\n",
        error="Corefile:3: a snippet cannot import itself: (loop)",
    ),
    ErrorCase(
        name="snippet-imports-itself-through-env",
        corefile="(loop) {\n    import {$CDNS_SNIP}\n}\n",
        env={"CDNS_SNIP": "loop"},
        error="Corefile:2: a snippet cannot import itself: (loop)",
    ),
    ErrorCase(
        name="snippet-without-block",
        corefile="(s)\nwhoami\n",
        error="Corefile:1: snippet (s) must be followed by a '{' block",
    ),
    ErrorCase(
        name="snippet-not-closed",
        corefile="(s) {\n    whoami\n",
        error="Corefile:2: Unexpected EOF",
    ),
    ErrorCase(
        name="unknown-directive-inside-snippet-reported-at-definition",
        corefile="(s) {\n    errors\n    nosuch\n}\n. {\n    import s\n}\n",
        error="Corefile:3: Unknown directive 'nosuch'",
    ),
    ErrorCase(
        name="snippets-import-each-other",
        corefile="(a) {\n    import b\n}\n(b) {\n    import a\n}\n. {\n    import a\n}\n",
        error="Corefile:5: maximum snippet import depth (10000) exceeded",
    ),
    ErrorCase(
        name="snippet-used-before-definition-is-a-file",
        corefile=". {\n    import later\n}\n(later) {\n    errors\n}\n",
        error="Corefile:2: File to import not found: later",
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=ErrorCase.id)
def test_parse_error(case: ErrorCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, case.env)
    write_files(tmp_path, case.files)
    with pytest.raises(CorefileError) as info:
        run_parse(case.corefile, tmp_path)
    assert str(info.value) == case.error.replace("{dir}", str(tmp_path))
    assert_located(info.value)


# -- details that a dump does not show -----------------------------------------------------------


def test_escapes_inside_quotes() -> None:
    text = '. {\n    log "say \\"hi\\"" "C:\\dir" "end\\\\" x\n}\n'
    (block,) = parse(text, ROOT, DIRECTIVES)
    (log,) = block.directives
    assert log.values == ['say "hi"', "C:\\dir", "end\\\\", "x"]
    assert [t.quoted for t in log.args] == [True, True, True, False]


def test_key_tokens_keep_their_own_lines() -> None:
    (block,) = parse("a.org,\n  b.org,\nc.org d.org {\n}\n", ROOT, DIRECTIVES)
    assert [(k.text, k.line) for k in block.keys] == [
        ("a.org", 1),
        ("b.org", 2),
        ("c.org", 3),
        ("d.org", 3),
    ]
    assert (block.file, block.line) == (ROOT, 1)


def test_option_lines_are_labelled_with_their_plugin() -> None:
    text = cf("""
        . {
            forward . 1.1.1.1 {
                policy {
                    bad value
                }
            }
        }
    """)
    (block,) = parse(text, ROOT, DIRECTIVES)
    (forward,) = block.directives
    lines = list(forward.walk())
    assert [(d.name, d.line, d.plugin) for d in lines] == [
        ("forward", 2, "forward"),
        ("policy", 3, "forward"),
        ("bad", 4, "forward"),
    ]
    assert str(lines[2].error("no good")) == "Corefile:4: forward: no good"
    assert lines[2].expect_args(1) == ["value"]
    assert str(lines[2].arg_error(0, "x")) == "Corefile:4: forward: x"
    with pytest.raises(CorefileError) as info:
        lines[1].expect_args(1)
    assert str(info.value) == "Corefile:3: forward: policy: expected exactly 1 argument, got 0"
    assert block.lines_of("forward") == [forward]


def test_imported_tokens_carry_absolute_path(tmp_path: Path) -> None:
    write_files(tmp_path, {"conf/extra.conf": "\nlog\n"})
    (block,) = run_parse(". {\n    import conf/extra.conf\n}\n", tmp_path)
    (log,) = block.directives
    assert (log.file, log.line) == (str(tmp_path / "conf" / "extra.conf"), 2)
    assert os.path.isabs(log.file)


def test_spec_c_keys_expand_to_three_zones() -> None:
    (block,) = parse(SPEC_C, ROOT, DIRECTIVES)
    zones = [z.zone for key in block.keys for z in parse_key(key.text, 53)]
    assert zones == ["0.0.10.in-addr.arpa.", "1.0.10.in-addr.arpa.", "cluster.local."]


def test_parse_file_resolves_imports_next_to_it(tmp_path: Path) -> None:
    write_files(tmp_path, {"etc/Corefile": ". {\n    import extra.conf\n}\n"})
    write_files(tmp_path, {"etc/extra.conf": "whoami\n"})
    (block,) = parse_file(str(tmp_path / "etc" / "Corefile"), DIRECTIVES, display_name=ROOT)
    assert [d.name for d in block.directives] == ["whoami"]
    assert block.file == ROOT


def test_parse_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(CorefileError) as info:
        parse_file(missing, DIRECTIVES)
    assert str(info.value) == f"{missing}:0: cannot read Corefile: No such file or directory"
    bad = tmp_path / "latin1"
    bad.write_bytes(b". {\n    log \xff\n}\n")
    with pytest.raises(CorefileError) as info:
        parse_file(str(bad), DIRECTIVES, display_name="Corefile")
    assert str(info.value).startswith("Corefile:0: Corefile is not valid UTF-8: ")
    (tmp_path / "bad.conf").write_text("whoami\nfoo\n")
    (tmp_path / "Corefile").write_text(". {\n    import bad.conf\n}\n")
    with pytest.raises(CorefileError) as info:
        parse_file(str(tmp_path / "Corefile"), DIRECTIVES)
    assert str(info.value) == f"{tmp_path}/bad.conf:2: Unknown directive 'foo'"


def test_parse_file_detects_a_cycle_back_to_itself(tmp_path: Path) -> None:
    write_files(tmp_path, {"Corefile": "(s) {\n}\n", "real.conf": ". {\n    import Core*\n}\n"})
    # The real source is real.conf: importing ./Corefile is no cycle, importing real.conf is.
    (block,) = parse_file(str(tmp_path / "real.conf"), DIRECTIVES, display_name=ROOT)
    assert block.directives == ()
    (tmp_path / "real.conf").write_text(". {\n    import real.*\n}\n")
    with pytest.raises(CorefileError) as info:
        parse_file(str(tmp_path / "real.conf"), DIRECTIVES, display_name=ROOT)
    assert str(info.value) == (
        f"Corefile:2: import cycle: {tmp_path}/real.conf is already being imported"
    )


def test_import_in_main_text_uses_base_dir_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_files(tmp_path, {"base/x.conf": "errors\n", "cwd/x.conf": "log\n"})
    monkeypatch.chdir(tmp_path / "cwd")
    (block,) = parse(
        ". {\n    import x.conf\n}\n", ROOT, DIRECTIVES, base_dir=str(tmp_path / "base")
    )
    assert [d.name for d in block.directives] == ["errors"]
    (block,) = parse(". {\n    import x.conf\n}\n", ROOT, DIRECTIVES)
    assert [d.name for d in block.directives] == ["log"]


def test_snippet_expansion_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_module, "MAX_SNIPPET_EXPANSIONS", 3)
    define = "(s) {\n    log\n}\n"
    (block,) = parse(define + ". {\n" + "    import s\n" * 3 + "}\n", ROOT, DIRECTIVES)
    assert [d.name for d in block.directives] == ["log"] * 3
    with pytest.raises(CorefileError) as info:
        parse(define + ". {\n" + "    import s\n" * 4 + "}\n", ROOT, DIRECTIVES)
    assert str(info.value) == "Corefile:8: maximum snippet import depth (3) exceeded"


def test_file_expansion_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_module, "MAX_FILE_EXPANSIONS", 2)
    write_files(tmp_path, {"a.conf": "log\n"})
    (block,) = run_parse(". {\n    import a.conf\n    import a.conf\n}\n", tmp_path)
    assert len(block.directives) == 2
    with pytest.raises(CorefileError) as info:
        run_parse(". {\n    import a.conf\n    import a.conf\n    import a.conf\n}\n", tmp_path)
    assert str(info.value) == "Corefile:4: maximum file import depth (2) exceeded"


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    depth = 5000
    text = ". {\n    forward . 1.1.1.1 {\n" + "o {\n" * depth + "}\n" * depth + "    }\n}\n"
    (block,) = parse(text, ROOT, DIRECTIVES)
    (forward,) = block.directives
    assert sum(1 for _ in forward.walk()) == depth + 1
    with pytest.raises(CorefileError) as info:
        parse(text[: -len("    }\n}\n")], ROOT, DIRECTIVES)
    assert str(info.value) == "Corefile:2: forward: Unexpected EOF: missing '}'"


def test_tokenize_lines_and_flags() -> None:
    toks = tokenize('a "b\nc" d\n\n e#f\n"g"', "F")
    assert [(t.text, t.line, t.quoted, t.newlines) for t in toks] == [
        ("a", 1, False, 0),
        ("b\nc", 1, True, 1),
        ("d", 2, False, 0),
        ("e", 4, False, 0),
        ("g", 5, True, 0),
    ]
    assert all(t.file == "F" for t in toks)


# -- properties ----------------------------------------------------------------------------------

SOUP_WORDS = [
    "{",
    "}",
    ".",
    "example.org",
    "example.org,",
    "whoami",
    "log",
    "forward",
    "nosuch",
    "import",
    "(snip)",
    "snip",
    "(other)",
    "other",
    "snip.conf",
    "*.conf",
    "{$CDNS_FUZZ}",
    '"a b"',
    '"{"',
    '"',
    "#",
    "\\",
    ",",
    "\n",
    "\r\n",
    " ",
    "\t",
]


FUZZ_CHARS = '{}"#\n\r\\ ,$%()*'
GLUES = [" ", "", "\n"]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An import base holding one harmless file, so imports both succeed and fail."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "snip.conf").write_text("log\n")
    return root


def check_outcome(text: str, base: Path) -> None:
    """Parse must return blocks or raise a located CorefileError; nothing else escapes."""
    n_lines = text.count("\n") + 1
    try:
        blocks = parse(text, ROOT, DIRECTIVES, base_dir=str(base))
    except CorefileError as exc:
        assert_located(exc)
        if exc.file == ROOT:
            assert exc.line <= n_lines
        return
    for block in blocks:
        assert block.keys and all(k.text for k in block.keys)
        for d in block.directives:
            assert d.name in DIRECTIVES
            for line in d.walk():
                assert line.plugin == d.name
                assert line.line >= 1
                if line.file == ROOT:
                    assert line.line <= n_lines


@settings(max_examples=300)
@given(text=st.text(alphabet=st.characters() | st.sampled_from(FUZZ_CHARS), max_size=200))
def test_any_text_parses_or_raises_corefile_error(text: str, fuzz_dir: Path) -> None:
    check_outcome(text, fuzz_dir)


@settings(max_examples=500)
@given(words=st.lists(st.sampled_from(SOUP_WORDS), max_size=60), glue=st.sampled_from(GLUES))
def test_token_soup_parses_or_raises_corefile_error(
    words: list[str], glue: str, fuzz_dir: Path
) -> None:
    check_outcome(glue.join(words), fuzz_dir)
