"""# errors

## Name

*errors* - logs the errors that plugins return while serving queries.

## Description

When a plugin after *errors* in the chain fails a query with an error (for example *forward*
cannot reach any upstream), *errors* writes one line to standard output:

~~~ txt
[ERROR] plugin/errors: 2 example.org. A: <error text>
~~~

that is the rcode the query is answered with (as a number), the query name in lower case, the
query type, and the error text. The reply itself is not changed: the server answers with that
rcode (SERVFAIL unless the plugin said otherwise).

Errors that match a `consolidate` pattern are counted instead of logged one by one. A window opens
with the first matching error and lasts DURATION; when it ends, one summary line is printed at
LEVEL, e.g. `[WARNING] plugin/errors: 3 errors like '.* i/o timeout$' occurred in last 30s`. With
`show_first` the first error of a window is logged at once (at LEVEL) and the summary is printed
only if more errors followed. Windows still open at shutdown print their summary then.

This plugin can only be used once per server block.

## Syntax

~~~ txt
errors [stdout] {
    stacktrace
    consolidate DURATION REGEXP [LEVEL] [show_first]
}
~~~

* `stdout` is the only destination there is (and the default); any other argument is an error.
* `stacktrace` logs a stack trace when the server recovers from a crash of a plugin.
* `consolidate` counts the errors whose text matches **REGEXP** (a regular expression of at most
  10000 characters, matched anywhere in the text unless anchored with `^` or `$`) during
  **DURATION** (Go syntax: `30s`, `5m`, `1h30m`; must be positive). **LEVEL** is one of `warning`,
  `error` (default), `info` or `debug` and, if given, comes before `show_first`. Several
  `consolidate` lines may be given; an error belongs to the first one whose REGEXP matches it.

## Examples

Answer with *whoami* in example.org and log every error to standard output:

~~~ corefile
example.org {
    whoami
    errors
}
~~~

Summarise upstream timeouts as warnings every five minutes, showing the first one at once, and
other *forward* failures every 30 seconds as errors:

~~~ corefile
. {
    errors {
        consolidate 5m ".* i/o timeout$" warning show_first
        consolidate 30s "^plugin/forward: "
    }
    whoami
}
~~~
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.plugins.errors.config import NAME, Consolidate, ErrorsConfig, parse
from clusterdns.plugins.errors.handler import Consolidator, Errors

__all__ = [
    "NAME",
    "SPEC",
    "Consolidate",
    "Consolidator",
    "Errors",
    "ErrorsConfig",
    "parse",
    "setup",
]


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse `errors` and register the hook that flushes open windows at shutdown."""
    config = parse(lines)
    consolidator = Consolidator(config.consolidate)
    if config.consolidate:
        ctx.on_shutdown(consolidator.stop)

    def factory(nxt: Handler | None) -> Handler:
        return Errors(config, nxt, consolidator)

    return factory


# Replay-safe: errors only logs errors returned up the chain and never changes a written reply, so
# replaying a written reply (the only kind the fast path stores) skips nothing it would have done.
SPEC: Final = PluginSpec(NAME, setup, once=True, replay_safe=True)
