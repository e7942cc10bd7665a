r"""# rewrite

## Name

*rewrite* - rewrites queries internally, and their replies back, invisibly to the client.

## Description

Each `rewrite` line is one rule; all the lines of a server block form one handler and are tried in
the order written, for every query. A rule that matches changes the query (its name, type, class
or EDNS0 options) before the plugins after *rewrite* see it (so *cache*, *kubernetes* and
*forward* work with the rewritten query, and cache it under the rewritten name), or asks for a
change to the reply (TTLs, rcode). `stop` (the default) ends rule processing at the first rule
that matches; `continue` applies the rule and goes on to the next.

Changes to the query happen in rule order; changes to the reply happen in the reverse order, to
every record of the answer, authority and additional sections. The client's question is put back
into the reply, so the client never sees the rewritten name. The one exception (copied from
CoreDNS): when the only rules that matched are `continue` rules that ask for no reply change (a
`type` or `class` rule, a `name` rule other than `exact` without `answer ...`, an `edns0` rule
without `revert`), the reply goes out as the later plugins wrote it, with the rewritten question.

If a rule leaves a question name that is not a valid domain name (an empty label, a label over 63
octets, a name over 255, a bad escape), the query fails with SERVFAIL and the error
`invalid name after rewrite: NAME`; so does a reply name that an `answer` rule leaves invalid.

Names are matched and rewritten in the text form CoreDNS writes them in: a dot, backslash, space
or one of `"'();@` inside a label has a backslash before it, other bytes outside 33-126 are
written `\DDD`. So `a\.b.example.org.` is the one label `a.b` under `example.org.`: FROM and TO
may use the same escapes (`name exact a\.b.example.org c.example.org`), and a regex sees them
(`\\\.` matches the dot inside a label).

### Fields

* `name [MATCH] FROM TO [answer auto | answer name FROM TO | answer value FROM TO ...]` rewrites
  the question name. MATCH is how FROM is compared with the lower-cased question name:
  * `exact` (the default): the whole name; the name becomes TO.
  * `prefix`: the name starts with FROM; FROM is replaced by TO.
  * `suffix`: the name ends with FROM; FROM is replaced by TO.
  * `substring`: the name contains FROM; every occurrence is replaced by TO.
  * `regex`: the regular expression FROM is found in the name; the name becomes TO, in which
    `{1}`, `{2}`... stand for FROM's groups (`{0}` for the whole match). At most 10000 characters.

  Except for `regex`, FROM and TO are made absolute and lower case first, so they end with a dot:
  `prefix foo bar` turns `foo.example.org` into `bar.example.org` but never touches
  `foobar.example.org`, and `substring` parts match only when followed by a dot.

  Reply rewrites (`answer` may be left out after the first one):
  * `answer auto` maps the rewritten name back: owner names, and the names in the data of CNAME,
    DNAME, SOA (primary server), SRV, MX, NAPTR, NS and PTR records, that equal the rewritten name
    or lie below it (in any letter case) get the original name back, as the client wrote it. For a
    `suffix` rule, names ending in TO get FROM back instead. An `exact` rule always behaves as if
    `answer auto` were given.
  * `answer name FROM TO` rewrites owner names in which the regular expression FROM is found to
    TO (with groups, as above).
  * `answer value FROM TO` does the same for the names in the data of the record types above.

  `answer auto` cannot be combined with `answer name`.
* `type FROM TO` changes the query type, e.g. `type ANY HINFO`.
* `class FROM TO` changes the query class (`IN`, `CH`, `HS`, `CS`, `NONE`, `ANY`). Queries whose
  class is not IN are refused before any plugin runs, so only rules from IN matter.
* `ttl [MATCH] NAME SECONDS|MIN-MAX` sets the TTL of every record of the reply to queries whose
  name NAME selects (MATCH as above, `exact` by default). A range clamps: `30-300` raises TTLs
  below 30 and lowers those above 300, `-30` only caps, `30-` only floors; `30` is `30-30`.
* `rcode [MATCH] NAME FROM TO` changes the reply's rcode FROM into TO (a mnemonic such as
  `SERVFAIL`, or a number from 0 to 23), for queries whose name NAME selects. It also applies
  when the plugins after *rewrite* fail without writing a reply (the reply is then written here).
* `edns0 local|nsid|subnet set|append|replace|unset ... [revert]` changes the EDNS0 options of the
  query (a query without an OPT record gets one, with a 4096-byte UDP size): `set` replaces the
  option or adds it, `append` adds it, `replace` replaces it only if present, `unset` removes it.
  * `local CODE DATA`: CODE is a number (`65518`, `0xffee`); DATA is text, hex bytes written
    `0x61626364`, or one of the variables `{qname}`, `{qtype}`, `{client_ip}`, `{client_port}`,
    `{protocol}`, `{server_ip}`, `{server_port}` (addresses and ports in network byte order).
  * `nsid`: an empty NSID option (the upstream then reports its name).
  * `subnet V4BITS V6BITS`: an EDNS0 client-subnet option (RFC 7871) with the client's address
    cut to V4BITS (0-32) or V6BITS (0-128) bits.

  With `revert`, an option set or added by the rule is removed again from (or its old value put
  back into) an OPT record of the reply, e.g. one relayed from the upstream. Replies to queries
  that got client data (`{client_ip}`, `{client_port}`, `{server_ip}`, `{server_port}`,
  `{protocol}`, `subnet`) are never replayed to other clients by the prepared-reply fast path.

### Block form

`rewrite [continue|stop] { ... }` joins every word inside the braces into that one rule, so a
long rule can be spread over lines:

~~~ txt
rewrite stop {
    name regex (.*)-(us-west-1)\.example\.org {1}.service.{2}.consul
    answer name (.*)\.service\.(us-west-1)\.consul {1}-{2}.example.org
}
~~~

## Syntax

~~~ txt
rewrite [continue|stop] FIELD [MATCH] [FROM TO | NAME TTL | NAME FROM TO] [OPTIONS]
rewrite [continue|stop] {
    FIELD ...
}
~~~

* **FIELD** `name`, `type`, `class`, `ttl`, `rcode` or `edns0` (see above).
* **MATCH** `exact`, `prefix`, `suffix`, `substring` or `regex`; must be given when OPTIONS
  follow.

## Examples

Give an in-cluster service an external-looking name: queries for `registry.example.org` are
answered from `registry.tools.svc.cluster.local`, and the answer carries the name the client asked
for:

~~~ corefile
.:53 {
    rewrite name exact registry.example.org registry.tools.svc.cluster.local
    hosts {
        10.96.9.9 registry.tools.svc.cluster.local
    }
}
~~~

`dig registry.example.org` then shows `registry.example.org. 3600 IN A 10.96.9.9`.

Move a whole domain, mapping answers back, and give the names a floor on their TTL:

~~~ corefile
. {
    rewrite continue {
        ttl suffix .corp.example.org 30-
    }
    rewrite stop {
        name suffix .corp.example.org .svc.cluster.local answer auto
    }
    template IN A svc.cluster.local {
        answer "{{ .Name }} 5 IN A 10.0.0.1"
    }
}
~~~

Rewrite with regular expression groups, rewriting the answer's owner names explicitly:

~~~ corefile
. {
    rewrite stop {
        name regex (.*)-(us-west-1)\.example\.org {1}.service.{2}.consul
        answer name (.*)\.service\.(us-west-1)\.consul {1}-{2}.example.org
    }
    template IN A consul {
        answer "{{ .Name }} 60 IN A 10.20.0.1"
    }
}
~~~

Answer `ANY` queries with HINFO data, tag queries with an EDNS0 option, and turn SERVFAIL into
NXDOMAIN for one name:

~~~ corefile
. {
    rewrite continue type ANY HINFO
    rewrite continue edns0 local set 0xffee {client_ip}
    rewrite rcode broken.example.org SERVFAIL NXDOMAIN
    whoami
}
~~~

## Bugs

`cname` rules (rewrite a CNAME target and resolve the new target) are rejected as not supported.
Regular expressions use Python's `re` syntax, which agrees with Go's RE2 for the usual patterns;
RE2-only spellings such as `\z` are rejected at start-up. Metadata variables (`{plugin/label}`)
in `edns0 local` rules are rejected: there is no *metadata* plugin. Options set by `edns0` rules
are not echoed back to the client (CoreDNS echoes them unless `revert` is given); the reply's
EDNS0 always follows the client's own query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.rewrite.config import parse, parse_rule, words_of
from clusterdns.plugins.rewrite.handler import NAME, Reverter, Rewrite, revert_reply
from clusterdns.plugins.rewrite.rules import Mode, Rule

__all__ = [
    "NAME",
    "SPEC",
    "Mode",
    "Reverter",
    "Rewrite",
    "Rule",
    "parse",
    "parse_rule",
    "revert_reply",
    "setup",
    "words_of",
]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse every `rewrite` line of the block into one handler's rules, in order."""
    rules = parse(lines)

    def factory(nxt: Handler | None) -> Handler:
        return Rewrite(rules, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup, replay_safe=True)
