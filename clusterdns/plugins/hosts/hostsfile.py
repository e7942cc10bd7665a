"""Hosts-file text -> an immutable index, and the file source that keeps it current.

`parse_hosts` turns `ADDRESS NAME [ALIASES...]` lines into a `HostsMap` (forward maps per
address family, wildcard maps, and the reverse map). `HostsFile` owns the path, the inline entries
and the current map; a re-read builds a whole new map and then swaps it in with one assignment, so
a query never sees half a file. No DNS messages are built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final, TypeVar

from clusterdns.dnsutil.names import fqdn, is_subdomain, valid_domain

IPAddress = IPv4Address | IPv6Address
Stamp = tuple[int, int]
"""(modification time in ns, size in bytes) of a file as last read."""
LoadCallback = Callable[[int, float], None]
"""Called after every (re)read with the entry count (file plus inline) and the file's mtime."""

IP4_ARPA: Final = ".in-addr.arpa."
IP6_ARPA: Final = ".ip6.arpa."
_A = TypeVar("_A", IPv4Address, IPv6Address)


@dataclass(frozen=True, slots=True)
class HostsMap:
    """The entries of one hosts text. Immutable once built; names are lower-case, absolute."""

    name4: Mapping[str, tuple[IPv4Address, ...]] = field(default_factory=dict)
    name6: Mapping[str, tuple[IPv6Address, ...]] = field(default_factory=dict)
    wild4: Mapping[str, tuple[IPv4Address, ...]] = field(default_factory=dict)
    """Wildcard owners (`*.example.com.`) -> IPv4 addresses."""
    wild6: Mapping[str, tuple[IPv6Address, ...]] = field(default_factory=dict)
    addr: Mapping[IPAddress, tuple[str, ...]] = field(default_factory=dict)
    """Address -> names, for PTR (empty with `no_reverse`; wildcards never appear here)."""

    def __len__(self) -> int:
        """Forward and reverse pairs, counted separately (the `coredns_hosts_entries` value)."""
        v4 = sum(map(len, self.name4.values())) + sum(map(len, self.wild4.values()))
        v6 = sum(map(len, self.name6.values())) + sum(map(len, self.wild6.values()))
        return v4 + v6 + sum(map(len, self.addr.values()))

    def v4(self, name: str) -> tuple[IPv4Address, ...]:
        """IPv4 addresses of a lower-case absolute name: explicit entries, else a wildcard's."""
        return _lookup(self.name4, self.wild4, name)

    def v6(self, name: str) -> tuple[IPv6Address, ...]:
        """IPv6 addresses of a lower-case absolute name: explicit entries, else a wildcard's."""
        return _lookup(self.name6, self.wild6, name)

    def names(self, addr: IPAddress) -> tuple[str, ...]:
        """Names that have `addr`, in file order."""
        return self.addr.get(addr, ())


EMPTY: Final = HostsMap()


def _lookup(
    explicit: Mapping[str, tuple[_A, ...]], wild: Mapping[str, tuple[_A, ...]], name: str
) -> tuple[_A, ...]:
    found = explicit.get(name)
    if found is not None:
        return found
    pattern = wildcard_of(name)
    if pattern is None:
        return ()
    return wild.get(pattern, ())


def wildcard_of(name: str) -> str | None:
    r"""The wildcard owner that would cover `name` (`a.example.com.` -> `*.example.com.`).

    None for the root and single-label names: a wildcard matches exactly one label below a name.
    The first label ends at the first dot that is not escaped (`a\.b.example.com.` is one label
    `a.b` under `example.com.`, as the query's text form writes it).
    """
    dot = name.find(".")
    backslash = name.find("\\", 0, dot)
    if backslash >= 0:  # an escape before the first dot: find the label's real end
        i = backslash
        while i < len(name) and name[i] != ".":
            i += 2 if name[i] == "\\" else 1
        dot = i if i < len(name) else -1
    if dot < 0 or dot >= len(name) - 1:
        return None
    return "*" + name[dot:]


def parse_ip(text: str) -> IPAddress | None:
    """Parse an address as a hosts file writes it; an IPv6 zone (`%eth0`) is dropped.

    An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) counts as the IPv4 address.
    """
    text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_from_reverse(name: str) -> IPAddress | None:
    """The address a lower-case reverse name stands for (`1.0.0.10.in-addr.arpa.` -> 10.0.0.1).

    None when the name is not under in-addr.arpa./ip6.arpa. or does not spell a whole address.
    """
    if name.endswith(IP4_ARPA):
        labels = name[: -len(IP4_ARPA)].split(".")
        return parse_ip(".".join(reversed(labels)))
    if name.endswith(IP6_ARPA):
        nibbles = name[: -len(IP6_ARPA)].split(".")
        nibbles.reverse()
        groups = ["".join(nibbles[i : i + 4]) for i in range(0, len(nibbles) - 3, 4)]
        if any(not g.isascii() or not g.isalnum() for g in groups):
            return None
        return parse_ip(":".join(groups))
    return None


def parse_hosts(text: str, zones: Sequence[str], *, auto_reverse: bool) -> HostsMap:
    """Index hosts-file text; lines that do not parse and names outside `zones` are skipped."""
    name4: dict[str, list[IPv4Address]] = {}
    name6: dict[str, list[IPv6Address]] = {}
    wild4: dict[str, list[IPv4Address]] = {}
    wild6: dict[str, list[IPv6Address]] = {}
    addr: dict[IPAddress, list[str]] = {}
    for raw in text.split("\n"):
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        ip = parse_ip(fields[0])
        if ip is None:
            continue
        for word in fields[1:]:
            name = fqdn(word).lower()
            if not _usable(name) or not any(is_subdomain(name, z) for z in zones):
                continue
            wildcard = name.startswith("*.")
            if isinstance(ip, IPv4Address):
                (wild4 if wildcard else name4).setdefault(name, []).append(ip)
            else:
                (wild6 if wildcard else name6).setdefault(name, []).append(ip)
            if auto_reverse and not wildcard:
                addr.setdefault(ip, []).append(name)
    return HostsMap(
        name4={k: tuple(v) for k, v in name4.items()},
        name6={k: tuple(v) for k, v in name6.items()},
        wild4={k: tuple(v) for k, v in wild4.items()},
        wild6={k: tuple(v) for k, v in wild6.items()},
        addr={k: tuple(v) for k, v in addr.items()},
    )


def _usable(name: str) -> bool:
    return name != "." and name.isascii() and valid_domain(name)


@dataclass(frozen=True, slots=True)
class Loaded:
    """The result of reading the file once: its new map and the stamp it was read at."""

    entries: HostsMap
    stamp: Stamp
    mtime_s: float


class HostsFile:
    """The hosts file plus the inline entries, re-read when the file changes. Loop-thread only.

    Lookups merge the file's entries (first) with the inline ones. If the file cannot be opened,
    the entries last read from it stay in effect.
    """

    def __init__(
        self,
        path: str,
        zones: Sequence[str],
        *,
        inline: Sequence[str] = (),
        auto_reverse: bool = True,
        on_load: LoadCallback | None = None,
    ) -> None:
        self.path = path
        self.zones = tuple(zones)
        self.auto_reverse = auto_reverse
        self.inline = parse_hosts("\n".join(inline), self.zones, auto_reverse=auto_reverse)
        self.file = EMPTY
        """The entries of the file as last read (replaced whole, never changed in place)."""
        self.stamp: Stamp | None = None
        self._on_load = on_load
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Entries of the file plus inline entries (forward and reverse counted separately)."""
        return len(self.file) + len(self.inline)

    def read_if_changed(self) -> Loaded | None:
        """Read and index the file if its mtime or size differ from the last read.

        Touches no shared state, so it may run in a worker thread. None when unchanged or when the
        file cannot be read.
        """
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp == self.stamp:
                    return None
                data = fh.read()
        except OSError:
            return None
        text = data.decode("utf-8", errors="replace")
        entries = parse_hosts(text, self.zones, auto_reverse=self.auto_reverse)
        return Loaded(entries, stamp, st.st_mtime_ns / 10**9)

    def apply(self, loaded: Loaded) -> None:
        """Swap in a newly read map (one assignment) and report it. Loop-thread only."""
        self.file = loaded.entries
        self.stamp = loaded.stamp
        if self._on_load is not None:
            self._on_load(len(self), loaded.mtime_s)

    def reload_if_changed(self) -> bool:
        """Re-read the file now if it changed; return whether new entries were swapped in."""
        loaded = self.read_if_changed()
        if loaded is None:
            return False
        self.apply(loaded)
        return True

    async def watch(self, interval_s: float) -> None:
        """Check the file every `interval_s` seconds until cancelled; reading runs in a thread."""
        while True:
            await asyncio.sleep(interval_s)
            loaded = await asyncio.to_thread(self.read_if_changed)
            if loaded is not None:
                self.apply(loaded)

    def start_watching(self, interval_s: float) -> None:
        """Start the reload task (if `interval_s` > 0 and it is not running). Loop-thread only."""
        if interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self.watch(interval_s), name=f"hosts {self.path}")

    @property
    def watching(self) -> bool:
        """Whether the reload task is running."""
        return self._task is not None and not self._task.done()

    async def stop_watching(self) -> None:
        """Cancel the reload task and wait for it to end (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def v4(self, name: str) -> tuple[IPv4Address, ...]:
        """IPv4 addresses of a lower-case absolute name (file entries, then inline)."""
        return self.file.v4(name) + self.inline.v4(name)

    def v6(self, name: str) -> tuple[IPv6Address, ...]:
        """IPv6 addresses of a lower-case absolute name (file entries, then inline)."""
        return self.file.v6(name) + self.inline.v6(name)

    def names(self, addr: IPAddress) -> tuple[str, ...]:
        """Names for a PTR answer (file entries, then inline)."""
        return self.file.names(addr) + self.inline.names(addr)

    def exists(self, name: str) -> bool:
        """Whether a name has any A or AAAA entry (explicit or by wildcard)."""
        return bool(self.v4(name) or self.v6(name))
