r"""# template

## Name

*template* - answers queries with records written as templates of the query.

## Description

Each `template` line is a rule; all the lines of a server block form one handler and are tried
in the order written. A rule applies to query names in its ZONES whose class and type fit CLASS
and TYPE (`ANY` in the rule fits every class or type, and a query of type `ANY` fits every rule
type); a rule that does not fit is skipped. The lower-cased query name is then tried against the
rule's `match` regexes, first match wins. With a match the plugin writes an authoritative reply
(flags `qr aa rd`) with the rule's rcode and the records its templates produce. Without one, a
rule with `fallthrough` covering the name hands the query to the next rule, and after the last
rule to the next plugin; a rule without it fails the query with SERVFAIL. Names outside every
rule's zones go straight to the next plugin.

Records are templates in the subset of Go's text/template shown below; the text they expand to is
read as one zone-file record: a missing TTL means 3600, a missing class IN, relative names are
absolute, and parentheses may wrap the data (`(1 60 60 60 60)`). A template that fails to run, or
text that is not exactly one valid record, fails the query with SERVFAIL and is counted in the
failure metrics.

Data a template can use:

* `.Name` the query name as the client sent it (letter case kept, so answers keep it too), in
  zone-file form: a dot or backslash inside a label is escaped with a backslash
  (`a\.b.example.org.` is the one label `a.b` under example.org), a space and bytes outside
  printable ASCII are written `\DDD`. Names in the record text are read back with these escapes,
  so an owner `{{ .Name }}` is the question's name byte for byte.
* `.Zone` the zone of the rule that matched, lower case (e.g. `example.org.`).
* `.Class`, `.Type` the query class and type (`IN`, `A`); for a query of class or type `ANY`, the
  rule's CLASS or TYPE.
* `.Match` the regex match: `{{ index .Match 0 }}` is the whole match, `{{ index .Match 1 }}` the
  first group.
* `.Group` the groups by name and by number: `{{ .Group.name }}`, `{{ index .Group "1" }}`.
* `.Regex` the regex that matched, `.Remote` the client's IP address.

Template syntax: `{{ FIELD }}`, `{{ index X N... }}`, `{{ len X }}`, `{{ parseInt S BASE BITS }}`
(Go's strconv.ParseUint), parentheses, pipes (`{{ .Group.b | len }}`), string and integer
constants, trim markers (`{{-`, `-}}`) and comments (`{{/* ... */}}`). Anything else Go allows
is rejected at start-up with the file and line. Write `{{ $x }}`, never `{{$x}}`: the Corefile
reads `{$x}` as an environment variable (and variables are not supported anyway).

Regexes are Go RE2 syntax, including named groups `(?P<name>...)` and `(?<name>...)`, inline
flags `(?i)`, `\Q...\E` and POSIX classes `[[:digit:]]`; what RE2 rejects (look-arounds,
back-references) is rejected at start-up.

## Syntax

~~~ txt
template CLASS TYPE [ZONES...] {
    match REGEX...
    answer RR...
    additional RR...
    authority RR...
    rcode CODE
    ederror CODE [REASON]
    fallthrough [ZONES...]
    upstream
}
~~~

* **CLASS** the query class to answer: `IN`, `CH`, `HS`, `CS`, `NONE` or `ANY`.
* **TYPE** the query type to answer (`A`, `PTR`, ...), or `ANY` for every type.
* **ZONES** the zones the rule applies to; default: the server block's zones.
* `match` **REGEX...** Go RE2 regexes tried against the lower-cased query name; the first that
  matches wins. Default `.*`. At most 10000 characters each.
* `answer`, `additional`, `authority` **RR...** templates that each produce one record for that
  section. None at all gives an empty section.
* `rcode` **CODE** the reply's rcode as a mnemonic (`NOERROR`, `NXDOMAIN`, ...); default
  `NOERROR`. `SERVFAIL` fails the query without writing a reply.
* `ederror` **CODE** [**REASON**] adds an Extended DNS Error (RFC 8914, CODE 0-65535) in an OPT
  record, also when the query had none.
* `fallthrough` [**ZONES...**] when no regex matches a name in ZONES (default: every zone), try
  the next rule, then the next plugin, instead of answering SERVFAIL.
* `upstream` obsolete; accepted with any arguments and ignored.

`var` and `expr` (CoreDNS's expression options) are rejected as not supported.

## Examples

Answer NXDOMAIN for every name:

~~~ corefile
. {
    template ANY ANY {
        rcode NXDOMAIN
    }
}
~~~

Answer NXDOMAIN with a cacheable SOA for the reserved `.invalid` top-level domain, in every
class, and forward everything else:

~~~ corefile
. {
    forward . /etc/resolv.conf
    template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
    }
}
~~~

`dig foo.invalid` then shows `NXDOMAIN`, flags `qr aa rd` and, in the authority section,
`invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60`.

Stop search-path junk early: a pod resolving `kubernetes.default.svc.cluster.local` with the
node's search domain `example.org` appended asks for
`kubernetes.default.svc.cluster.local.example.org`, which can never exist:

~~~ corefile
.:53 {
    errors
    template ANY ANY example.org {
        match "\.cluster\.local\.example\.org\.$"
        rcode NXDOMAIN
        authority "{{ .Zone }} 60 IN SOA ns.example.org. hostmaster.example.org. (1 60 60 60 60)"
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa
    forward . /etc/resolv.conf
}
~~~

Every other name under example.org falls through to `forward`.

Address and reverse records computed from the name (`ip-10-0-1-2.example.org` is `10.0.1.2`;
the reverse zone is given as a CIDR):

~~~ corefile
. {
    template IN A example.org {
        match "^ip-10-0-(?P<c>[0-9]+)-(?P<d>[0-9]+)[.]example[.]org[.]$"
        answer "{{ .Name }} 60 IN A 10.0.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN PTR 10.0.0.0/16 {
        match "^(?P<d>[0-9]+)[.](?P<c>[0-9]+)[.]0[.]10[.]in-addr[.]arpa[.]$"
        answer "{{ .Name }} 60 IN PTR ip-10-0-{{ .Group.c }}-{{ .Group.d }}.example.org."
    }
    forward . /etc/resolv.conf
}
~~~

Hexadecimal labels with `parseInt` (`ip-0a0001ff.example.org` is `10.0.1.255`), and an MX
record with its address in the additional section:

~~~ corefile
example.org {
    template IN A {
        match "^ip-0a00(?P<c>[0-9a-f]{2})(?P<d>[0-9a-f]{2})[.]"
        answer "{{ .Name }} 60 IN A 10.0.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
    }
    template IN MX {
        match "^(mail[0-9]*)[.]example[.]org[.]$"
        answer "{{ .Name }} 60 IN MX 10 {{ index .Match 1 }}.example.org."
        additional "{{ index .Match 1 }}.example.org. 60 IN A 192.0.2.25"
    }
}
~~~

Tell clients their own address, and refuse a blocked name with Extended DNS Error 15
("Blocked") and a reason:

~~~ corefile
example.org {
    template IN TXT whoami.example.org {
        answer "{{ .Name }} 0 IN TXT \"{{ .Remote }}\""
    }
    template ANY ANY blocked.example.org {
        rcode REFUSED
        ederror 15 "blocked by policy"
    }
}
~~~

## Metrics

If monitoring is enabled (via the *prometheus* plugin) then the following metrics are exported:

* `coredns_template_matches_total{server, zone, view, class, type}` queries a rule matched.
* `coredns_template_template_failures_total{server, zone, view, class, type, section, template}`
  templates that failed to run.
* `coredns_template_rr_failures_total{server, zone, view, class, type, section, template}`
  templates whose text was not one valid record.

`zone` is the zone of the rule that matched (as `.Zone` shows it), `view` is always empty,
`section` is `answer`, `additional` or `authority`, and `template` is the template as Go prints
it (`{{.Name}} 60 IN A {{index .Match 1}}`).

## Bugs

CoreDNS follows a CNAME in the answer of an A or AAAA query with an upstream lookup of its target
through the whole chain and appends what it finds; clusterdns does not (yet): the reply holds
only the CNAME. Only the template subset above is supported, and `.Message`, `.Question`, `.Var`
and `.Meta` are not. `var` and `expr` are not supported. Unicode classes in regexes (`\pL`) are
rejected, and `(?i)` folds letter case like Python, not like Go (the same for ASCII names).
Extended rcodes (16 and up) are rejected. CoreDNS's `.Name` is the lower-cased name; ours keeps
the client's letter case.

## See Also

Go's text/template and RE2 syntax documentation; RFC 1035 section 5 for the record format;
RFC 8914 for Extended DNS Errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.template.config import TemplateConfig, parse
from clusterdns.plugins.template.handler import NAME, Template, metrics_for

__all__ = ["NAME", "SPEC", "Template", "TemplateConfig", "parse", "setup"]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse every `template` line of the block into one handler's rules, in order."""
    config = parse(lines, ctx.zones)
    metrics = metrics_for(ctx.metrics)

    def factory(nxt: Handler | None) -> Handler:
        return Template(config, metrics, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup)
