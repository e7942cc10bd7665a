"""# loadbalance

## Name

*loadbalance* - randomizes the order of A, AAAA and MX records.

## Description

The plugin acts as a round-robin DNS load balancer: it reorders the records of every reply that
the plugins after it write. Only NOERROR replies are touched, and never zone transfers (AXFR,
IXFR). Because it runs before *cache*, cached replies are reordered on every hit.

With the `round_robin` policy (the default), each of the answer, authority and additional sections
of two or more records is reordered on its own: CNAME records first, in their original order (some
stub resolvers, glibc's among them, insist on it), then the records that are not A, AAAA or MX, in
their original order, then the A and AAAA records shuffled together, then the MX records shuffled.
A section of only A, or only AAAA, records is simply shuffled. Every order is equally likely.

With `prefer`, after the shuffle the A and AAAA records of the answer and additional sections
that lie inside one of the listed networks move to the front, those of the first network first;
such a section then reads: CNAMEs, preferred addresses, other addresses, MX, everything else.

The `weighted` policy does not shuffle: for A, AAAA and SRV queries it moves one address record
of the answer and additional sections to the top, chosen at random with the weights of a weight
file, and orders the rest of the section like `round_robin` does (without shuffling).

Replies whose order depends on chance are never replayed by the server's prepared-reply fast
path; replies that come out the same every time (a single address, an NXDOMAIN) still are. The
last `loadbalance` line of a server block takes effect; every line is checked.

## Syntax

~~~ txt
loadbalance [round_robin | weighted WEIGHTFILE] {
    reload DURATION
    prefer CIDR...
}
~~~

* `round_robin` shuffle A, AAAA and MX records uniformly (the default policy). Its block takes only
  `prefer`.
* `weighted` **WEIGHTFILE** put one address first, chosen with the weights in **WEIGHTFILE** (a
  path relative to the working directory). Its block takes only `reload`.
* `reload` **DURATION** how often to check the weight file for changes (Go duration syntax, e.g.
  `10s`); `30s` by default, `0` never. The file is re-read when its content changed; a file that
  does not parse is logged and the weights in effect are kept. A file that cannot be opened at
  start-up is a warning when `reload` is not 0 (it is tried again), an error otherwise.
* `prefer` **CIDR...** networks (`ADDRESS/LENGTH`) whose addresses go first, in the order given.

### Weight file

~~~ txt
# comment lines start with '#'
www.example.org
100.64.1.1 3
100.64.1.2 1
100.64.1.3 2
~~~

A domain name on a line of its own starts a list of `ADDRESS WEIGHT` lines for that name;
weights are whole numbers from 1 to 255. An address of a reply that the file does not list for
the record's owner name has weight 1. Names are compared without regard to letter case.

## Examples

Shuffle the addresses that the *hosts* plugin answers with:

~~~ corefile
example.org {
    loadbalance
    hosts {
        10.0.0.1 www.example.org
        10.0.0.2 www.example.org
        10.0.0.3 www.example.org
    }
}
~~~

Shuffle, then put addresses in 10.1.0.0/16 (this node's zone, say) first, and IPv6 in
fd00::/8 after them:

~~~ corefile
example.org {
    loadbalance round_robin {
        prefer 10.1.0.0/16 fd00::/8
    }
    hosts {
        10.0.0.1 www.example.org
        10.1.0.1 www.example.org
        fd00::1 www.example.org
    }
}
~~~

With a weight file: `100.64.1.1`, `100.64.1.2` and `100.64.1.3` come first in the ratio
3 : 1 : 2 for `www.example.org` (the file need not exist yet; it is looked for every 10 s):

~~~ corefile
example.org {
    loadbalance weighted /etc/coredns/example.org.weights {
        reload 10s
    }
    hosts {
        100.64.1.1 www.example.org
        100.64.1.2 www.example.org
        100.64.1.3 www.example.org
    }
}
~~~

## Bugs

As in CoreDNS, `weighted` and `prefer` cannot be combined: `prefer` is an unknown property in a
`weighted` block, as `reload` is in a `round_robin` one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import format_duration
from clusterdns.plugins.loadbalance.config import LoadBalanceConfig, Policy, parse
from clusterdns.plugins.loadbalance.handler import (
    NAME,
    LoadBalance,
    LoadBalanceWriter,
    Reorder,
    RoundRobin,
    prefer_subnets,
    round_robin,
)
from clusterdns.plugins.loadbalance.weighted import (
    Weighted,
    WeightFile,
    WeightFileError,
    parse_weights,
)

__all__ = [
    "NAME",
    "SPEC",
    "LoadBalance",
    "LoadBalanceConfig",
    "LoadBalanceWriter",
    "Policy",
    "RoundRobin",
    "WeightFile",
    "Weighted",
    "parse",
    "parse_weights",
    "prefer_subnets",
    "round_robin",
    "setup",
]

log = logging.getLogger(__name__)


def _weighted(d: Directive, config: LoadBalanceConfig, ctx: SetupContext) -> Weighted:
    weights = WeightFile(config.weight_file, config.reload_s)
    try:
        weights.load()
    except OSError as exc:
        if config.reload_s == 0:
            raise d.error(f"weight file open error: {exc.strerror or exc}") from exc
        log.warning(
            "Failed to open weight file: %s: %s. Will try again in %s",
            config.weight_file,
            exc.strerror or exc,
            format_duration(config.reload_s),
        )
    except WeightFileError as exc:
        raise d.error(str(exc)) from exc
    ctx.on_startup(weights.start)
    ctx.on_shutdown(weights.stop)
    return Weighted(weights)


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse every `loadbalance` line (the last takes effect) and return the factory."""
    config = parse(lines)
    reorder: Reorder
    if config.policy is Policy.WEIGHTED:
        reorder = _weighted(lines[-1], config, ctx)
    else:
        reorder = RoundRobin(prefer=config.prefer)

    def factory(nxt: Handler | None) -> Handler:
        return LoadBalance(reorder, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup, replay_safe=True)
