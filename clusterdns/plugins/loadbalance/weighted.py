"""The `weighted` policy: a weight file, its periodic re-read, and the weighted top-address pick.

The file holds a domain name on a line of its own, followed by `ADDRESS WEIGHT` lines (weight 1 to
255) for that name; `#` starts a comment line. An address without a weight counts 1. For A, AAAA
and SRV replies, one address record of the answer and additional sections is swapped to the top,
chosen at random in proportion to its weight. Loop-thread only.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from dnslib import RR, DNSRecord

from clusterdns.dnsutil import rcode as rc
from clusterdns.plugins.loadbalance.handler import same, split_section, with_sections

log = logging.getLogger(__name__)

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_WEIGHT = 255


class WeightFileError(ValueError):
    """The weight file does not parse; the message names the line and the file."""


def canonical_ip(text: str) -> IP | None:
    """An address with IPv4-mapped IPv6 folded to IPv4 (Go's net.IP.Equal), or None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class WeightTable:
    """Domain (lower case, absolute) -> (address, weight) pairs in file order."""

    domains: Mapping[str, tuple[tuple[IP, int], ...]] = field(default_factory=dict)

    def weight(self, owner: str, ip: IP | None) -> int:
        """The weight of `ip` for `owner`: the first matching line, else 1."""
        for addr, value in self.domains.get(owner.lower(), ()):
            if addr == ip:
                return value
        return 1


def parse_weights(text: str, path: str) -> WeightTable:
    """Parse a weight file's content.

    Raises:
        WeightFileError: a line that is neither a domain nor `ADDRESS WEIGHT`, a bad address or
            weight, or addresses before the first domain.
    """
    domains: dict[str, list[tuple[IP, int]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 1:
            name = fields[0]
            if canonical_ip(name) is not None:
                raise WeightFileError(
                    f'wrong domain name:"{name}" in weight file {path}. '
                    "(Maybe a missing weight value?)"
                )
            current = (name if name.endswith(".") else name + ".").lower()
            domains.setdefault(current, [])
        elif len(fields) == 2:
            ip = canonical_ip(fields[0])
            if ip is None:
                raise WeightFileError(f'wrong IP address:"{fields[0]}" in weight file {path}')
            text_weight = fields[1]
            weight = int(text_weight) if text_weight.isdecimal() and text_weight.isascii() else 0
            if not 1 <= weight <= MAX_WEIGHT:
                raise WeightFileError(f'wrong weight value:"{text_weight}" in weight file {path}')
            if not current:
                raise WeightFileError(f"missing domain name in weight file {path}")
            domains[current].append((ip, weight))
        else:
            raise WeightFileError(f'could not parse weight line:"{line}" in weight file {path}')
    return WeightTable({name: tuple(pairs) for name, pairs in domains.items()})


class WeightFile:
    """The weights currently in effect, re-read from the file when its content changes."""

    def __init__(
        self,
        path: str,
        reload_s: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.path = path
        self.reload_s = reload_s
        self.sleep = sleep
        self.table = WeightTable()
        self._digest: bytes | None = None
        self._task: asyncio.Task[None] | None = None

    def load(self) -> bool:
        """Read the file; swap in its weights if its content changed. Return whether it did.

        Raises:
            OSError: the file cannot be read.
            WeightFileError: the file does not parse (the weights in effect are kept).
        """
        with open(self.path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        table = parse_weights(data.decode("utf-8", "replace"), self.path)
        self._digest = digest
        self.table = table
        log.info("Successfully reloaded weight file %s", self.path)
        return True

    def reload(self) -> None:
        """One periodic check: errors are logged and the weights in effect are kept."""
        try:
            self.load()
        except OSError as exc:
            log.error("weight file open error: %s", exc)
        except WeightFileError as exc:
            log.error("%s", exc)

    async def watch(self) -> None:
        """Check the file every `reload_s` seconds until cancelled."""
        while True:
            await self.sleep(self.reload_s)
            self.reload()

    async def start(self) -> None:
        """Start-up hook: start the periodic check (none when `reload_s` is 0)."""
        if self.reload_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.watch())

    async def stop(self) -> None:
        """Shutdown hook: stop the periodic check."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])


def _ip_of(rr: RR) -> IP | None:
    return canonical_ip(str(rr.rdata))


class Weighted:
    """The weighted policy: one weighted-random address record to the top of its section."""

    def __init__(self, weights: WeightFile, rng: random.Random | None = None) -> None:
        self.weights = weights
        self.rng = rng if rng is not None else random.Random()

    def top_index(self, address: Sequence[RR]) -> int:
        """Pick the index of the record to put first, with probability weight / total."""
        table = self.weights.table
        weights = [table.weight(str(rr.rname), _ip_of(rr)) for rr in address]
        order = sorted(range(len(address)), key=lambda i: -weights[i])
        point = self.rng.randrange(sum(weights))
        running = 0
        for i in order:
            running += weights[i]
            if point < running:
                return i
        return order[-1]

    def section(self, records: Sequence[RR]) -> tuple[list[RR], bool]:
        """Reorder one section: CNAME, other, addresses (picked one first), MX."""
        cname, other, address, mx = split_section(records)
        if not address:
            return list(records), False
        top = self.top_index(address)
        address[0], address[top] = address[top], address[0]
        return cname + other + address + mx, len(address) > 1

    def __call__(self, msg: DNSRecord) -> tuple[DNSRecord, bool]:
        """Reorder the answer and additional sections of A, AAAA and SRV replies."""
        if not msg.questions or int(msg.q.qtype) not in (rc.A, rc.AAAA, rc.SRV):
            return msg, False
        answer, a_random = self.section(msg.rr)
        additional, x_random = self.section(msg.ar)
        if same(answer, msg.rr) and same(additional, msg.ar):
            return msg, a_random or x_random
        return with_sections(msg, answer, list(msg.auth), additional), a_random or x_random
