"""Write the seed corpora: `python -m fuzz.seeds` (or `fuzz/run.py --seeds`).

Seeds come from the test tables, so the fuzzers start where the tests stand:

- DNS queries (`wire`, `responder`, `fastpath`): every name of the reference-cluster worked
  examples (spec §6.14) and a few external names, asked for every common query type, with the
  EDNS, DO, CD, AD, letter-case and RD variants of the fast-path tests; plus every malformed
  packet of `tests/server/test_wire_policy.py`.
- names (`names`): the question name of every query seed (plain and compressed forms), and the
  pointer cases of the wire-policy table.
- Corefiles (`corefile`): every Corefile in a plugin README's Examples, `Corefile.example`, the
  kubeadm Corefile (spec §0.3) in both cache forms.
- upstream replies (`upstream`): a selector byte and an upstream reply as a resolver sends it:
  answers, CNAME chains, NXDOMAIN/NODATA with and without SOA, TC, SERVFAIL, REFUSED, TTLs with
  the high bit set, EDNS options, compressed owner names.

Each seed is stored as `fuzz/corpus/<target>/seed-<sha1>`: the name says it came from here, the
content hash keeps reruns idempotent. Files the fuzzer added (bare hashes) are left alone.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from dnslib import EDNS0, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord, EDNSOption

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make `tests` and `fuzz` importable
    sys.path.insert(0, str(ROOT))

CORPUS: Final = ROOT / "fuzz" / "corpus"
CRASHES: Final = ROOT / "fuzz" / "crashes"

QUERY_TYPES: Final = (
    "A", "AAAA", "SRV", "PTR", "TXT", "MX", "NS", "SOA", "CNAME", "ANY", "AXFR", "IXFR",
    "HINFO", "CAA", "DS", "DNSKEY", "SVCB", "HTTPS", "NAPTR",
)  # fmt: skip
EXTRA_TYPES: Final = (41, 249, 250, 251, 252, 65280, 0)
"""OPT, TKEY, TSIG, IXFR, AXFR as numbers, a private type, type 0."""
EXTERNAL: Final = (
    "example.com.", "db.example.com.", "db.example.net.", "example.org.", "www.example.org.",
    "nx.example.org.", "kubernetes.default.svc.cluster.local.svc.cluster.local.",
    "kubernetes.default._sip._tcp.abc_d.example.com.", "1kubernetes.default.svc.cluster.local.",
    ".", "cluster.local.", "in-addr.arpa.", "ip6.arpa.", "10.in-addr.arpa.",
    "1.0.96.10.in-addr.arpa.", "dns-version.cluster.local.", "ns.dns.cluster.local.",
)  # fmt: skip


def query(
    qname: str,
    qtype: str | int = "A",
    *,
    qid: int = 0x1234,
    rd: bool = True,
    cd: bool = False,
    ad: bool = False,
    edns: int | None = None,
    do: bool = False,
    version: int = 0,
    options: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """Wire bytes of one query."""
    q = DNSRecord(DNSHeader(id=qid, rd=int(rd)), q=DNSQuestion(qname, _qtype(qtype)))
    q.header.cd = int(cd)
    q.header.ad = int(ad)
    if edns is not None:
        opts = [EDNSOption(code, data) for code, data in options]
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else "", version=version, opts=opts))
    return bytes(q.pack())


def _qtype(qtype: str | int) -> int:
    return qtype if isinstance(qtype, int) else int(getattr(QTYPE, qtype))


def mixed_case(name: str) -> str:
    """Every third letter upper-cased (a 0x20-randomising resolver)."""
    return "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(name))


VARIANTS: Final[dict[str, dict[str, object]]] = {
    "plain": {},
    "no-rd": {"rd": False},
    "cd": {"cd": True},
    "ad": {"ad": True},
    "edns-1232": {"edns": 1232},
    "edns-4096-do": {"edns": 4096, "do": True},
    "edns-tiny": {"edns": 100},
    "edns-v1": {"edns": 1232, "version": 1},
    "edns-cookie": {"edns": 1232, "options": ((10, bytes(range(8))),)},
    "edns-nsid": {"edns": 1232, "options": ((3, b""),)},
    "edns-unknown-option": {"edns": 1232, "options": ((100, b"\x01\x02"),)},
    "edns-keepalive": {"edns": 1232, "options": ((11, b""),)},
}


def cluster_names() -> list[str]:
    """Every question name of the reference worked examples (spec §6.14)."""
    from tests.plugins.kubernetes.test_reference import CASES

    return sorted({c.qname for c in CASES})


def queries() -> Iterator[bytes]:
    """The DNS query seeds."""
    from tests.server.test_wire_policy import PACKETS

    names = cluster_names() + list(EXTERNAL)
    for name in names:
        for qtype in ("A", "AAAA", "SRV", "PTR", "TXT", "ANY"):
            yield query(name, qtype)
        yield query(name, "A", edns=1232)
    for name in names[::4]:
        for qtype in QUERY_TYPES:
            yield query(name, qtype, edns=1232)
        for number in EXTRA_TYPES:
            yield query(name, number)
    for name in names[::6]:
        for flags in VARIANTS.values():
            yield query(name, "A", **flags)  # type: ignore[arg-type]
            yield query(mixed_case(name), "SRV", **flags)  # type: ignore[arg-type]
    # the long search-path names of the Kubernetes e2e tests (ndots:5)
    search = ".".join(f"{'9' * 38}.k8s.io" for _ in range(2))
    yield query(f"kubernetes.default.{search}.", "A")
    yield query("kubernetes.default.svc.cluster.local.svc.cluster.local.", "AAAA")
    for class_ in (3, 4, 254, 255):  # CH, HS, NONE, ANY
        q = DNSRecord(DNSHeader(id=7), q=DNSQuestion("version.bind.", QTYPE.TXT, class_))
        yield bytes(q.pack())
    for packet in PACKETS:
        yield packet.data


def name_wire(data: bytes) -> bytes | None:
    """The question name of a query as the bytes after the header (None: no question)."""
    if len(data) <= 12:
        return None
    off = 12
    while off < len(data):
        length = data[off]
        if length == 0:
            return data[12 : off + 1]
        if length & 0xC0:
            return data[12 : off + 2]
        off += 1 + length
    return data[12:]


def name_seeds(packets: Iterable[bytes]) -> Iterator[bytes]:
    """The names target's seeds: question names, and names with pointers into the header."""
    for data in packets:
        wire = name_wire(data)
        if wire is not None:
            yield wire
    yield b"\xc0\x0c"  # a pointer to itself
    yield b"\x03abc\xc0\x0c"  # a pointer back to the start of the name
    yield b"\x03abc\xc0\x02"  # a pointer into the header
    yield b"\x03abc\xc0\x11"  # a forward pointer
    yield b"\x40" + b"a" * 64 + b"\x00"  # extended label type 01
    yield b"\x80abc\x00"  # label type 10
    yield (b"\x3f" + b"a" * 63) * 4 + b"\x00"  # longer than 255 octets
    yield b"\x02\xff\x00\x03abc\x00"  # not UTF-8, NUL
    yield b"\x1aapi.prod.svc.cluster.local\x00"  # dots inside a label (fixed bug label-text)
    yield b"\x03a\\b\x02\\.\x00"  # backslashes inside labels
    yield b'\x08a b;@()"\x07example\x00'  # the other zone-file specials


def corefiles() -> Iterator[bytes]:
    """Every Corefile of the plugin READMEs, the example and the kubeadm Corefile."""
    fence = re.compile(r"~~~ corefile\n(.*?)~~~", re.S)
    for init in sorted((ROOT / "clusterdns" / "plugins").glob("*/__init__.py")):
        for match in fence.finditer(init.read_text()):
            yield match.group(1).encode()
    example = ROOT / "Corefile.example"
    if example.exists():
        yield example.read_bytes()
    from tests.e2e.reference_cases import NEW_CACHE, OLD_CACHE, REFERENCE_COREFILE

    yield REFERENCE_COREFILE.encode()
    yield REFERENCE_COREFILE.replace(OLD_CACHE, NEW_CACHE).encode()
    yield b"(snip) {\n    whoami\n}\n.:53 {\n    import snip\n}\n"
    yield b'.:53 {\n    template IN A {\n        match "^(?P<a>[a-z]+)\\.x\\.$"\n    }\n}\n'
    yield (
        b"dns://.:53 dns://example.org:1053 {\n    errors {\n        consolidate 5m .*\n    }\n}\n"
    )


def _reply(
    name: str,
    records: Iterable[str] = (),
    authority: Iterable[str] = (),
    *,
    rcode: int = 0,
    tc: bool = False,
    edns: bool = False,
    options: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """An upstream reply to `name A` (the harness replaces the ID and the question)."""
    reply = DNSRecord(
        DNSHeader(id=0, qr=1, ra=1, rd=1, rcode=rcode, tc=int(tc)), q=DNSQuestion(name)
    )
    for line in records:
        for rr in RR.fromZone(line):
            reply.add_answer(rr)
    for line in authority:
        for rr in RR.fromZone(line):
            reply.add_auth(rr)
    if edns:
        opts = [EDNSOption(code, data) for code, data in options]
        reply.add_ar(EDNS0(udp_len=1232, opts=opts))
    wire = bytes(reply.pack())
    end = 12 + len(name_wire(wire) or b"") + 4
    return wire[:12] + wire[end:]


def upstream_replies() -> Iterator[bytes]:
    """The upstream target's seeds: selector byte + reply."""
    name = "Db.Example.com."
    soa = "example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 300"
    replies = [
        _reply(name, [f"{name} 300 IN A 192.0.2.50"]),
        _reply(name, [f"{name} 300 IN AAAA 2001:db8::50"]),
        _reply(
            name, [f"{name} 300 IN CNAME www.example.com.", "www.example.com. 60 IN A 192.0.2.1"]
        ),
        _reply(name, [f"{name} 300 IN MX 10 mail.example.com."]),
        _reply(name, [f'{name} 300 IN TXT "v=spf1 -all" "{"x" * 200}"']),
        _reply(name, [f"{name} 300 IN SRV 0 100 443 www.example.com."]),
        _reply(name, [f"{name} 300 IN NS ns1.example.com."]),
        _reply(name, [], [soa], rcode=3),
        _reply(name, [], [], rcode=3),
        _reply(name, [], [soa]),
        _reply(name, [], [], rcode=2),
        _reply(name, [], [], rcode=5),
        _reply(name, [], [], tc=True),
        _reply(name, [f"{name} 4294967295 IN A 192.0.2.50"]),
        _reply(name, [f"{name} 2147483648 IN A 192.0.2.50"]),
        _reply(name, [f"{name} 0 IN A 192.0.2.50"]),
        _reply(name, [f"{name} 300 IN A 192.0.2.{i}" for i in range(60)]),
        _reply(name, [f"{name} 300 IN A 192.0.2.50"], edns=True, options=((10, bytes(24)),)),
        _reply(name, [f"{name} 300 IN A 192.0.2.50"], edns=True, options=((15, b"\x00\x03"),)),
        _reply(name, ["other.example. 300 IN A 203.0.113.66"]),
    ]
    for reply in replies:
        for selector in (0, 1, 2, 3, 6, 7, 8, 16, 0x3A):
            yield bytes([selector]) + reply


def write(target: str, seeds: Iterable[bytes]) -> tuple[int, int]:
    """Store seeds for `target`; returns (new corpus files, new reproducers).

    A seed that runs into a known bug (`fuzz.harness.KNOWN`) is stored as a reproducer,
    `fuzz/crashes/<target>/<bug>.seed-<sha1>`, not in the corpus: the corpus must replay clean.
    """
    from fuzz.harness import TARGETS, Violation, quiet

    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    new = reproducers = 0
    for seed in seeds:
        digest = hashlib.sha1(seed).hexdigest()
        try:
            with quiet():
                TARGETS[target](seed)
        except Violation as exc:
            if exc.bug is None:
                raise
            crash = CRASHES / target / f"{exc.bug}.seed-{digest}"
            crash.parent.mkdir(parents=True, exist_ok=True)
            if not crash.exists():
                crash.write_bytes(seed)
                reproducers += 1
            continue
        path = folder / f"seed-{digest}"
        if not path.exists():
            path.write_bytes(seed)
            new += 1
    return new, reproducers


def main() -> int:
    """Write every target's seeds; print how many per target."""
    packets = list(dict.fromkeys(queries()))
    plan: dict[str, list[bytes]] = {
        "wire": packets,
        "responder": packets,
        "fastpath": [p for p in packets if len(p) >= 12],
        "names": list(dict.fromkeys(name_seeds(packets))),
        "corefile": list(dict.fromkeys(corefiles())),
        "upstream": list(dict.fromkeys(upstream_replies())),
    }
    for target, seeds in plan.items():
        new, reproducers = write(target, seeds)
        print(f"{target}: {len(seeds)} seeds ({new} new, {reproducers} new known-bug reproducers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
