"""Helpers for the end-to-end tests: queries with dnspython, bounded polling, HTTP side listeners,
the reference cluster as API objects, and `dig` output parsed into sections.

Expected replies are `tests.dnstest.Case` values (zone-file text, exact TTLs), as in the handler
tests; `check` compares them with dnspython's parse of the reply as it came off the wire (a
reply is never re-encoded: that would re-compress names and lose their letter case).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import yaml

from clusterdns.server.lifecycle import Server
from tests import dnstest
from tests.dnstest import Case

ROOT: Final = Path(__file__).resolve().parents[2]
REFERENCE_YAML: Final = ROOT / "tests" / "fixtures" / "k8s" / "reference.yaml"
QUERY_TIMEOUT_S: Final = 5.0
WAIT_S: Final = 30.0
"""Generous bound for anything a test waits on (a change to show, a listener to answer)."""
POLL_S: Final = 0.02
"""Interval between two probes of a condition that has no event to wait on."""
SERIAL: Final = "<serial>"
"""Placeholder for the SOA serial in expected records (filled in by `with_serial`)."""

JSON = dict[str, Any]
T = TypeVar("T")


def soa(zone: str = "cluster.local.", ttl: int = 30) -> str:
    """The kubernetes plugin's SOA record for `zone`, with the serial left as a placeholder."""
    return (
        f"{zone} {min(ttl, 300)} IN SOA ns.dns.{zone} hostmaster.{zone} {SERIAL} "
        f"7200 1800 86400 {ttl}"
    )


def with_serial(case: Case, serial: int) -> Case:
    """`case` with the SOA serial placeholder replaced by `serial`."""

    def fill(lines: Sequence[str]) -> list[str]:
        return [line.replace(SERIAL, str(serial)) for line in lines]

    return replace(case, answer=fill(case.answer), ns=fill(case.ns), extra=fill(case.extra))


async def query(
    port: int, qname: str, qtype: str = "A", *, proto: str = "udp"
) -> dns.message.Message:
    """One query to 127.0.0.1:port over UDP or TCP (RD set, no EDNS, as dnspython sends it)."""
    msg = dns.message.make_query(qname, dns.rdatatype.from_text(qtype))
    if proto == "tcp":
        return await dns.asyncquery.tcp(msg, "127.0.0.1", port=port, timeout=QUERY_TIMEOUT_S)
    return await dns.asyncquery.udp(msg, "127.0.0.1", port=port, timeout=QUERY_TIMEOUT_S)


def rr_lines(section: Sequence[dns.rrset.RRset]) -> list[str]:
    """A reply section as sorted zone-file lines (`owner ttl class type rdata`), case kept."""
    return sorted(
        f"{rrset.name.to_text()} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
        f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in section
        for rd in rrset
    )


def zone_lines(lines: Sequence[str]) -> list[str]:
    """Expected zone-file lines in the form `rr_lines` gives."""
    out: list[str] = []
    for line in lines:
        owner, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
        rd = dns.rdata.from_text(rdclass, rdtype, rdata)
        out.append(f"{dns.name.from_text(owner).to_text()} {int(ttl)} {rdclass} {rdtype} {rd}")
    return sorted(out)


def flags(msg: dns.message.Message) -> set[str]:
    """The header flags that are set, lower case (`qr aa rd`)."""
    return set(dns.flags.to_text(msg.flags).lower().split())


def check_reply(case: Case, msg: dns.message.Message) -> None:
    """Compare a reply with `case`: rcode, flags (when given) and all three sections."""
    what = case.id()
    rcode = dns.rcode.to_text(msg.rcode())
    assert rcode == case.rcode, f"{what}: rcode {rcode}, want {case.rcode}\n{msg}"
    for section, want, got in (
        ("answer", case.answer, msg.answer),
        ("authority", case.ns, msg.authority),
        ("additional", case.extra, msg.additional),
    ):
        assert rr_lines(got) == zone_lines(want), (
            f"{what}: {section}\n got {rr_lines(got)}\nwant {zone_lines(want)}"
        )
    if case.flags is not None:
        assert flags(msg) == set(case.flags.split()), f"{what}: flags {flags(msg)}"


async def check(port: int, case: Case, *, proto: str = "udp") -> None:
    """Send `case`'s question and check the whole reply."""
    check_reply(case, await query(port, case.qname, case.qtype, proto=proto))


def addresses(msg: dns.message.Message) -> set[str]:
    """The A and AAAA addresses in a reply's answer section."""
    return {
        rd.to_text()
        for rrset in msg.answer
        for rd in rrset
        if rd.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
    }


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    what: str,
    timeout_s: float = WAIT_S,
) -> T:
    """Probe until `accept(result)`, at most `timeout_s`; returns the accepted result.

    Used where the only observable is the answer itself (a DNS reply, an HTTP status): the
    interval between probes paces the polling, it is never what the test relies on.

    Raises:
        AssertionError: not accepted in time (with the last result).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if accept(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s; last: {result!r}")
        await asyncio.sleep(POLL_S)


async def soa_serial(port: int, zone: str = "cluster.local.") -> int:
    """The SOA serial the server answers for `zone` now."""
    reply = await query(port, zone, "SOA")
    serial: int = reply.answer[0][0].serial
    return serial


# -- HTTP side listeners (ready, prometheus) -------------------------------------------------------
def http_port(server: Server, address: str) -> int:
    """The bound port of the side listener configured as `address` (e.g. `127.0.0.1:0`)."""
    return server.config.process.http.listeners[address].port


async def http_get(port: int, path: str) -> tuple[int, str]:
    """`dnstest.http_get` as (status, body text), for modules that import it from here
    (tests/e2e/test_kubernetes_api.py, tests/faults)."""
    reply = await dnstest.http_get(port, path, timeout_s=QUERY_TIMEOUT_S)
    return reply.status, reply.text


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of sample `name{labels}` in a Prometheus exposition, or None when absent."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return None


# -- the reference cluster as the API holds it -----------------------------------------------------
def reference_objects(path: Path = REFERENCE_YAML) -> list[JSON]:
    """Every object of the reference cluster fixture (spec §0.4)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find_object(objects: Sequence[JSON], kind: str, namespace: str, name: str) -> JSON:
    """The object of `kind` named `namespace/name` (a KeyError names it when missing)."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if (
            obj.get("kind") == kind
            and meta.get("name") == name
            and meta.get("namespace", "") == namespace
        ):
            return obj
    raise KeyError(f"{kind} {namespace}/{name}")


# -- dig output ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigReply:
    """A `dig` reply: status, header flags, and each section as whitespace-normalised lines."""

    status: str
    flags: frozenset[str]
    answer: tuple[str, ...]
    authority: tuple[str, ...]
    additional: tuple[str, ...]


_SECTIONS: Final = {
    ";; ANSWER SECTION:": "answer",
    ";; AUTHORITY SECTION:": "authority",
    ";; ADDITIONAL SECTION:": "additional",
}


def parse_dig(text: str) -> DigReply:
    """Parse dig's default output; SOA serials are replaced by the `SERIAL` placeholder.

    Raises:
        AssertionError: the output holds no reply header.
    """
    header = re.search(r"status: (\w+),", text)
    flags = re.search(r";; flags: ([a-z ]*)[;:]", text)
    assert header is not None and flags is not None, f"no reply in dig output:\n{text}"
    sections: dict[str, list[str]] = {"answer": [], "authority": [], "additional": []}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line in _SECTIONS:
            current = _SECTIONS[line]
            continue
        if not line or line.startswith(";"):
            current = None if not line else current
            continue
        if current is not None:
            fields = line.split()
            if len(fields) > 6 and fields[3] == "SOA":
                fields[6] = SERIAL
            sections[current].append(" ".join(fields))
    return DigReply(
        status=header.group(1),
        flags=frozenset(flags.group(1).split()),
        answer=tuple(sorted(sections["answer"])),
        authority=tuple(sorted(sections["authority"])),
        additional=tuple(sorted(sections["additional"])),
    )


def records(*lines: str) -> tuple[str, ...]:
    """Expected record lines, whitespace-normalised and sorted as `parse_dig` gives them."""
    return tuple(sorted(" ".join(line.split()) for line in lines))
