"""Corefile text -> server blocks of directives; knows nothing about DNS or plugins.

The grammar is CoreDNS's (coredns/caddy): whitespace-separated tokens, quoted strings, `#`
comments, `{$ENV}` substitution, `(snippets)`, `import` of snippets, files and globs. Every
token remembers its file and line so that every error can name them.
"""

from clusterdns.corefile.directive import Directive, ServerBlock
from clusterdns.corefile.lexer import Token, tokenize
from clusterdns.corefile.parser import parse, parse_file

__all__ = ["Directive", "ServerBlock", "Token", "parse", "parse_file", "tokenize"]
