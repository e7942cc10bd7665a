"""Spec §6.14 and §8.3 through the reference (kubeadm) Corefile of spec §0.3: the data.

The expected replies are the handler-level table of `tests/plugins/kubernetes/test_reference.py`
(which states the TTLs "without a cache"), turned into what leaves the real server with
`cache 30` in front (spec §8.2): every record of a reply carries the entry's duration, i.e. the
smallest TTL of the reply capped at 30 and raised to 5, and a SERVFAIL carries the `servfail`
duration, 5 s. Both cache forms of §0.3 give the same first reply; they differ only on repeated
queries (§8.3), which the test module drives with the cache's injected clock.

Forwarded queries reach `tests.upstream`'s stub, whose zone holds the records of the handler
table's upstream stand-in (`UPSTREAM_DATA`); where the stand-in answers NXDOMAIN without an SOA,
the stub (like a real resolver) adds the SOA of the closest zone it knows, the root's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from dnslib import QTYPE, RR

from clusterdns.dnsutil import rcode as rc
from tests.dnstest import Case
from tests.plugins.kubernetes.cluster import (
    AA,
    FORWARDED,
    IN_CLUSTER,
    REFERENCE_YAML,
    SERIAL,
    UPSTREAM_DATA,
    K8sCase,
    soa,
)
from tests.plugins.kubernetes.test_reference import CASES as HANDLER_CASES
from tests.upstream import Zone

# -- the Corefiles -------------------------------------------------------------------------------

REFERENCE_COREFILE: Final = """\
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
    cache 30
    loop
    reload
    loadbalance
}
"""
"""Spec §0.3, verbatim: what kubeadm writes into the `coredns` ConfigMap."""

OLD_CACHE: Final = "    cache 30\n"
NEW_CACHE: Final = """\
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
"""
"""The cache line as newer kubeadm renders it (kubernetes/kubernetes PR #128359), spec §0.3."""

LAMEDUCK_S: Final = 5.0
CACHE_TTL: Final = 30
"""`cache 30`: the longest any reply is cached, and so the largest TTL that leaves the server."""
CACHE_MIN_TTL: Final = 5
SERVFAIL_TTL: Final = 5


class CacheForm(enum.Enum):
    """The two renderings of the reference Corefile's cache line (spec §0.3)."""

    OLD = "cache 30"
    NEW = "cache 30 { disable success cluster.local; disable denial cluster.local }"

    @property
    def text(self) -> str:
        return OLD_CACHE if self is CacheForm.OLD else NEW_CACHE

    @property
    def id(self) -> str:
        return self.name.lower()


def _substitute(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the Corefile"
    return text.replace(old, new)


def reference_corefile(
    form: CacheForm,
    *,
    yaml: Path | str = REFERENCE_YAML,
    options: Sequence[str] = (),
    stub: str | None = None,
    in_process: bool = True,
) -> str:
    """The reference Corefile in `form`, reading the cluster from `yaml`.

    In process (`in_process`): the key `.:53` becomes `.:0`, health/ready/prometheus listen on
    `127.0.0.1:0` and `forward` goes to `stub` (`host:port`). Otherwise only the cluster source
    is added: the text runs as is, e.g. in a network namespace whose resolv.conf names the stub.
    `options` are extra lines for the `kubernetes` block (spec §6.14's `[with ...]` conditions);
    a `pods` option replaces `pods insecure`.
    """
    text = _substitute(REFERENCE_COREFILE, OLD_CACHE, form.text)
    lines = [f"       from_yaml {yaml}"]
    for option in options:
        if option.startswith("pods "):
            text = _substitute(text, "       pods insecure\n", f"       {option}\n")
        else:
            lines.append(f"       {option}")
    text = _substitute(
        text, "       ttl 30\n", "       ttl 30\n" + "".join(f"{x}\n" for x in lines)
    )
    if in_process:
        assert stub is not None, "the in-process Corefile needs the stub's address"
        text = _substitute(text, ".:53 {", ".:0 {")
        text = _substitute(text, "    health {", "    health 127.0.0.1:0 {")
        text = _substitute(text, "    ready\n", "    ready 127.0.0.1:0\n")
        text = _substitute(text, "prometheus :9153", "prometheus 127.0.0.1:0")
        text = _substitute(text, "forward . /etc/resolv.conf {", f"forward . {stub} {{")
    return text


# -- the stub upstream ---------------------------------------------------------------------------

STUB_RECORDS: Final = tuple(line for lines in UPSTREAM_DATA.values() for line in lines)
"""What the upstream knows: the spec's reference upstream (§0.4) plus a PTR for 8.8.8.8."""


def stub_zone() -> Zone:
    """The stub upstream's zone (the default SOAs: example.com. and the root)."""
    return Zone(STUB_RECORDS)


# -- expected replies ----------------------------------------------------------------------------


def entry_ttl(case: Case) -> int:
    """The TTL every record of `case`'s reply gets from `cache 30` (spec §8.2)."""
    if case.rcode == "SERVFAIL":
        return SERVFAIL_TTL
    ttls = [
        int(rr.ttl) for line in (*case.answer, *case.ns, *case.extra) for rr in RR.fromZone(line)
    ]
    if not ttls:
        return CACHE_MIN_TTL
    return max(CACHE_MIN_TTL, min(CACHE_TTL, min(ttls)))


def with_ttl(lines: Sequence[str], ttl: int) -> list[str]:
    """Zone-file lines with every TTL set to `ttl`."""
    out: list[str] = []
    for line in lines:
        for rr in RR.fromZone(line):
            rr.ttl = ttl
            out.append(str(rr))
    return out


def through_cache(case: Case) -> Case:
    """`case` as it leaves a server with `cache 30` in front of the plugin (first query)."""
    ttl = entry_ttl(case)
    return replace(
        case,
        answer=with_ttl(case.answer, ttl),
        ns=with_ttl(case.ns, ttl),
        extra=with_ttl(case.extra, ttl),
    )


def from_stub(case: K8sCase, zone: Zone) -> K8sCase:
    """A forwarded case answered by the stub `zone`: rcode, answer and authority as it says."""
    code, answer, authority = zone.lookup(case.qname, int(getattr(QTYPE, case.qtype)))
    stub = replace(
        case,
        rcode=rc.rcode_name(code),
        answer=[str(rr) for rr in answer],
        ns=[str(rr) for rr in authority],
    )
    # The stand-in and the stub must agree on what the handler table checks.
    assert stub.rcode == case.rcode, case.label()
    assert sorted(stub.answer) == sorted(str(rr) for a in case.answer for rr in RR.fromZone(a))
    return stub


_SERIAL_RE: Final = re.compile(rf"(\sSOA\s+\S+\s+\S+\s+){SERIAL}(\s)")


def with_serial(case: Case, serial: int) -> Case:
    """`case` with the plugin's SOA serial (the handler table's fixed one) set to `serial`."""

    def fill(lines: Sequence[str]) -> list[str]:
        return [_SERIAL_RE.sub(rf"\g<1>{serial}\g<2>", line) for line in lines]

    return replace(case, answer=fill(case.answer), ns=fill(case.ns), extra=fill(case.extra))


@dataclass(frozen=True)
class Example:
    """One §6.14 example as the real server must answer it."""

    case: Case
    """The expected first reply (exact TTLs; the SOA serial is the handler table's, replaced
    by the running store's at check time)."""
    options: tuple[str, ...] = ()
    """Extra `kubernetes` lines this example's condition needs."""
    local: tuple[str, ...] = tuple(IN_CLUSTER)
    """The server's own addresses (the kubernetes plugin's own-address hook)."""
    upstream: tuple[str, ...] = ()
    """Queries the stub upstream must have received, as "qname TYPE"."""
    synced: bool = True
    """False: asked before the initial list of the cluster completed."""

    @property
    def id(self) -> str:
        parts = [f"{self.case.qname} {self.case.qtype}"]
        parts.extend(f"[{o}]" for o in self.options)
        if self.local != tuple(IN_CLUSTER):
            parts.append(f"[own {','.join(self.local)}]")
        if not self.synced:
            parts.append("[before sync]")
        return " ".join(parts)


def _example(case: K8sCase, zone: Zone) -> Example:
    assert case.zones == "cluster.local in-addr.arpa ip6.arpa", case.label()
    assert case.files == (REFERENCE_YAML,), case.label()
    expected: K8sCase = from_stub(case, zone) if case.flags == FORWARDED else case
    options = tuple(o.strip() for o in case.options.splitlines() if o.strip())
    plain = Case(
        qname=expected.qname,
        qtype=expected.qtype,
        rcode=expected.rcode,
        answer=expected.answer,
        ns=expected.ns,
        extra=expected.extra,
        flags=expected.flags,
        ordered=expected.ordered,
    )
    return Example(through_cache(plain), options=options, local=case.local, upstream=case.upstream)


AXFR: Final = Example(Case(qname="cluster.local.", qtype="AXFR", rcode="REFUSED", flags="qr rd"))
"""`cluster.local. AXFR = REFUSED flags:qr rd (no sections)`: the plugin refuses without
writing and the server writes the reply."""

BEFORE_SYNC: Final = Example(
    through_cache(
        Case(
            qname="nosuch.prod.svc.cluster.local.",
            rcode="SERVFAIL",
            flags=AA,
            ns=[soa(serial=0)],
        )
    ),
    synced=False,
)
"""`nosuch.prod.svc.cluster.local. A [before the initial list completed]`: SERVFAIL with the SOA
at TTL 5. Nothing has been listed, so the serial is 0."""


def examples() -> list[Example]:
    """Every example of spec §6.14 (90 queries), in the spec's order, AXFR and sync last."""
    zone = stub_zone()
    return [_example(c, zone) for c in HANDLER_CASES] + [AXFR, BEFORE_SYNC]


EXAMPLES: Final = examples()


# -- the namespace tier: a handful of examples checked with dig --------------------------------

DIG_EXAMPLES: Final = (
    "kubernetes.default.svc.cluster.local. A",
    "_http._tcp.web.prod.svc.cluster.local. SRV",
    "web.prod.svc.cluster.local. A",
    "db.prod.svc.cluster.local. A",
    "dns-version.cluster.local. TXT",
    "cluster.local. NS",
    "nosuch.prod.svc.cluster.local. A",
    "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. PTR",
    "30.1.244.10.in-addr.arpa. PTR",
    "example.com. A",
)
"""Examples queried with dig inside the namespace (default setting, in-cluster address)."""


def example(label: str) -> Example:
    """The default-setting example whose query is `label` ("qname TYPE")."""
    for e in EXAMPLES:
        if e.id == label:
            return e
    raise KeyError(label)
