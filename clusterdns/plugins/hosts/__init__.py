"""# hosts

## Name

*hosts* - answers A, AAAA and PTR queries from a `/etc/hosts` style file and inline entries.

## Description

The file holds lines of the form `ADDRESS NAME [ALIASES...]` (hosts(5)); `#` starts a comment,
and lines that do not parse are skipped. IPv4 and IPv6 addresses are accepted (an IPv6 zone such
as `%eth0` is ignored). Names are made absolute and lower-case, and names outside the plugin's
ZONES are ignored. A `*` as the leftmost label makes a wildcard that matches exactly one label:
`*.example.org` matches `www.example.org`, but neither `example.org` nor `a.b.example.org`; an
explicit name always wins over the wildcard.

Lines inside the block that are not options are hosts-file lines too (*inline entries*); they are
served together with the file's entries. They are only recognised before a `fallthrough` line.

For a name inside ZONES:

* A or AAAA with entries: an authoritative answer with one record per address.
* A name that has entries, but not of the asked type (AAAA for an IPv4-only name, MX, TXT...):
  an authoritative NOERROR reply with an empty answer and no SOA.
* A name without entries: the next plugin if `fallthrough` covers it, otherwise SERVFAIL (the
  plugin has no SOA from which to build an NXDOMAIN).

PTR records are generated for every entry that is not a wildcard, unless `no_reverse` is given.
A PTR query is answered for any reverse name that has an entry, even outside ZONES; one without
an entry always goes to the next plugin. Queries for names outside ZONES go to the next plugin.

The file is read at start-up and checked every `reload` interval; it is re-read when its
modification time or size changed. If it disappears, the entries last read from it stay in
effect, as do the inline entries. The answer's owner names keep the letter case of the query.
This plugin can be used once per server block.

## Syntax

~~~ txt
hosts [FILE [ZONES...]] {
    [INLINE ENTRIES]
    ttl SECONDS
    no_reverse
    reload DURATION
    fallthrough [ZONES...]
    fallthrough_unsupported
}
~~~

* **FILE** the hosts file to read, `/etc/hosts` if omitted. A file missing at start-up is
  logged as a warning, not an error.
* **ZONES** the zones answered for; the server block's zones if omitted. CIDRs stand for their
  reverse zones.
* **INLINE ENTRIES** hosts-file lines, merged with the file's entries.
* `ttl` the TTL of every record, 1 to 65535 seconds; 3600 by default.
* `no_reverse` do not generate PTR records.
* `reload` how often to check the file for changes (Go duration syntax, e.g. `30s`, `1m`);
  5s by default, `0` disables.
* `fallthrough` pass queries for names without entries to the next plugin, in **ZONES** (all
  zones if none are listed). A name with entries but not of the asked type is still answered
  with an empty NOERROR.
* `fallthrough_unsupported` also pass query types other than A, AAAA and PTR to the next plugin,
  within the zones of `fallthrough` (which it requires), even for names that have entries.

## Examples

Serve the container's `/etc/hosts` for every name, failing for names it does not know:

~~~ corefile
. {
    hosts
}
~~~

Serve `example.org` from `/etc/example.hosts`, checking for changes every 30 seconds, and
forward everything else:

~~~ corefile
. {
    hosts /etc/example.hosts example.org {
        reload 30s
        fallthrough
    }
    forward . 10.0.0.10
}
~~~

Add a registry name in front of the cluster DNS without touching any file; names without an entry
go on to the *kubernetes* plugin and then upstream:

~~~ corefile
.:53 {
    hosts {
        10.0.0.50 registry.example.org
        fd00::50 registry.example.org
        ttl 60
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa
    forward . /etc/resolv.conf
}
~~~

Send every single-label name below `apps.example.org` to one address, except `api`, without PTR
records, and let other query types for those names go upstream:

~~~ corefile
example.org {
    hosts /etc/hosts example.org {
        10.1.0.10 *.apps.example.org
        10.1.0.20 api.apps.example.org
        no_reverse
        fallthrough
        fallthrough_unsupported
    }
    forward . 10.0.0.10
}
~~~

## Metrics

If the *prometheus* plugin is enabled:

* `coredns_hosts_entries{hostsfile}` - entries of the file plus inline entries, forward and
  reverse counted separately; set each time the file is read, so absent while it does not exist.
* `coredns_hosts_reload_timestamp_seconds` - the modification time of the file as of its last
  read (Unix seconds).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.setup import PluginSpec, SetupContext
from clusterdns.corefile import Directive
from clusterdns.metrics import NAMESPACE, Gauge, Metrics
from clusterdns.plugins.hosts.config import HostsConfig, parse
from clusterdns.plugins.hosts.handler import NAME, Hosts
from clusterdns.plugins.hosts.hostsfile import HostsFile

__all__ = ["NAME", "SPEC", "Hosts", "HostsConfig", "HostsMetrics", "metrics_for", "parse", "setup"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostsMetrics:
    """The plugin's series; one pair per process metrics, shared by every `hosts` line."""

    entries: Gauge
    reload_timestamp: Gauge


def _make_metrics(metrics: Metrics) -> HostsMetrics:
    """Build and register the series (once per process, through `Metrics.shared`)."""
    found = HostsMetrics(
        entries=Gauge(
            f"{NAMESPACE}_hosts_entries",
            "The combined number of entries in hosts and Corefile.",
            ("hostsfile",),
        ),
        reload_timestamp=Gauge(
            f"{NAMESPACE}_hosts_reload_timestamp_seconds",
            "The timestamp of the last reload of hosts file.",
        ),
    )
    metrics.register(found.entries, found.reload_timestamp)
    return found


def metrics_for(metrics: Metrics) -> HostsMetrics:
    """Return the hosts series of `metrics`, registering them on first use."""
    return metrics.shared("hosts", _make_metrics)


def _check_file(d: Directive, path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        log.warning("File does not exist: %s", path)
        return
    except OSError as exc:
        raise d.error(f"unable to access hosts file '{path}': {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        log.warning('Hosts file "%s" is a directory', path)


def setup(lines: Sequence[Directive], ctx: SetupContext) -> PluginFactory:
    """Parse the `hosts` line, read the file once, and register the reload task's hooks."""
    d = lines[0]
    config = parse(d, ctx.zones)
    _check_file(d, config.path)
    series = metrics_for(ctx.metrics)

    def on_load(entries: int, mtime_s: float) -> None:
        series.entries.set((config.path,), entries)
        series.reload_timestamp.set((), mtime_s)

    hosts = HostsFile(
        config.path,
        config.zones,
        inline=config.inline,
        auto_reverse=config.auto_reverse,
        on_load=on_load,
    )
    hosts.reload_if_changed()

    async def start() -> None:
        hosts.reload_if_changed()
        hosts.start_watching(config.reload_s)

    ctx.on_startup(start)
    ctx.on_shutdown(hosts.stop_watching)

    def factory(nxt: Handler | None) -> Handler:
        return Hosts(config, hosts, nxt)

    return factory


SPEC: Final = PluginSpec(NAME, setup, once=True)
