"""The prepared-reply table: query bytes after the ID -> wire reply after the ID.

The server's responder looks a query up here before anything is decoded; a hit splices the
query's ID in front of the stored tail and sends. Plugins (kubernetes, cache) keep it exact: a
plugin that answers attaches an `Offer` to the writer (its zone slot's generation, an optional
expiry); the responder then stores the sent bytes in its listener's table, and the plugin bumps
the slot's generation on every change it sees, which invalidates all entries of the slot.
The key is every byte after the ID, so flags, letter case, EDNS size and DO are all part of
it, and a hit is byte-for-byte the reply the full chain would give. UDP and TCP replies are kept
in separate tables (a TCP reply is never truncated, and metrics label the transport).

Plugins that count queries (prometheus, a cache in front) add a hit hook to the offer on its way
back to the server (`Offer.with_hit`); the stored entry calls them on every replay, so the
counters move exactly as if the chain had run.

A reply whose record order is left to chance (loadbalance) can be offered with `variants`: other
orders of the same records, each one the full chain could have sent. The server packs them as it
packed the reply and the entry replays them in turn, so clients see the order change from one
reply to the next instead of one order frozen. Loop-thread only.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from dnslib import DNSRecord

DEFAULT_CAPACITY: Final = 100_000
"""Entries of the UDP table (the TCP table holds an eighth)."""
DEFAULT_MAX_BYTES: Final = 32 * 2**20
"""Bytes of the UDP table, as `entry_size` counts them (the TCP table: an eighth). About 100,000
single-address replies; the measured resident cost of a full table is close to this figure."""
ENTRY_OVERHEAD: Final = 270
"""Resident bytes of one entry besides its key and reply bytes: the entry object, two bytes
objects' headers and the ordered dict's slot and link (tracemalloc: 375 B for a 46-byte key and
a 62-byte reply)."""
TCP_SHARE: Final = 8

HitHook = Callable[[str, int], None]
"""Called with (proto, family) on every replay: `proto` is "udp" or "tcp", `family` 1 (IPv4) or
2 (IPv6). It must be cheap (plain integer counters) and must not raise."""

Variants = Callable[[int], Sequence[DNSRecord]]
"""Given n, returns n replies with the same records in other orders, as the answering plugins
hand them to the server (before EDNS mirroring and packing)."""

VARIANTS: Final = 16
"""Orders stored for a reply offered with variants (the reply itself and 15 more)."""


@dataclass(slots=True)
class Prepared:
    """One prepared reply."""

    tail: bytes
    """The reply without its first two bytes (the ID)."""
    slot: int
    """Zone slot (from `FastPath.slot`) whose generation must still match."""
    generation: int
    expires: float = math.inf
    """Monotonic deadline; inf = valid until the zone's generation moves."""
    on_hit: HitHook | None = None
    """Called with (proto, family) on every hit, so metrics see the query."""
    tails: tuple[bytes, ...] = ()
    """Other orders of the reply, replayed in turn with `tail` (empty: `tail` only)."""
    turn: int = 0
    size: int = 0
    """Bytes the entry is counted at in its table (set when stored)."""

    def next_tail(self) -> bytes:
        """The tail to send now: `tail`, or the next of the stored orders."""
        tails = self.tails
        if not tails:
            return self.tail
        turn = self.turn = (self.turn + 1) % len(tails)
        return tails[turn]


class Generations:
    """Process-wide generation counters, one per slot (a zone of a plugin instance)."""

    def __init__(self) -> None:
        self._generations: list[int] = []
        self._slots: dict[str, int] = {}

    def slot(self, owner: str) -> int:
        """Register (or find) the slot named `owner` (e.g. `kubernetes:cluster.local.`)."""
        if owner not in self._slots:
            self._slots[owner] = len(self._generations)
            self._generations.append(0)
        return self._slots[owner]

    def generation(self, slot: int) -> int:
        """The current generation of a slot."""
        return self._generations[slot]

    def bump(self, slot: int) -> None:
        """Invalidate every entry of a slot (they are dropped lazily on lookup)."""
        self._generations[slot] += 1

    def current(self) -> list[int]:
        """The live counter list (read on every fast-path hit)."""
        return self._generations


@dataclass(frozen=True, slots=True)
class Offer:
    """What a plugin attaches to a reply it allows the fast path to replay."""

    slot: int
    generation: int
    expires: float = math.inf
    hits: tuple[HitHook, ...] = ()
    """What the plugins the reply passed through would count for each replay, in the order they
    were added (innermost plugin first)."""
    variants: Variants | None = None
    """Other orders of the reply (see the module docstring); None: the reply is the only one."""

    def with_hit(self, hook: HitHook) -> Offer:
        """The same offer with one more hit hook (a counting plugin passing the offer on)."""
        return Offer(self.slot, self.generation, self.expires, (*self.hits, hook), self.variants)

    def with_variants(self, variants: Variants) -> Offer:
        """The same offer for a reply whose order was left to chance."""
        return Offer(self.slot, self.generation, self.expires, self.hits, variants)

    def on_hit(self) -> HitHook | None:
        """One hook that runs every hook of the offer (None when there is none)."""
        return combine(self.hits)


def combine(hooks: tuple[HitHook, ...]) -> HitHook | None:
    """One hook calling each of `hooks` in order; None for none, the hook itself for one."""
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def run_all(proto: str, family: int) -> None:
        for hook in hooks:
            hook(proto, family)

    return run_all


class FastPath:
    """One listener's bounded tables of prepared replies (listeners may route names differently).

    `get` and `offer` serve UDP; `get_tcp` and `offer(..., proto="tcp")` the TCP table. Each
    table is bounded in entries and in bytes (keys, replies and a measured per-entry overhead);
    the oldest entries go first. Keys include the letter case of the name, so a client can make
    any number of them: the byte bound is what keeps such a flood, or stored reply orders, from
    growing the process. The TCP table gets an eighth of the bounds.
    """

    def __init__(
        self,
        generations: Generations,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.capacity = capacity
        self.clock = clock
        # Ordered: evicting the oldest entry is O(1) (a plain dict's first key is found by
        # scanning the holes earlier deletions left, which a flood of new names makes quadratic).
        self._table: OrderedDict[bytes, Prepared] = OrderedDict()
        self._tcp: OrderedDict[bytes, Prepared] = OrderedDict()
        self._limits = {
            "udp": (capacity, max_bytes),
            "tcp": (max(1, capacity // TCP_SHARE), max_bytes // TCP_SHARE),
        }
        self._bytes = {"udp": 0, "tcp": 0}
        self._generations = generations.current()
        self.udp: Mapping[bytes, Prepared] = self._table
        """The UDP table, read-only, for the UDP hot path: an entry is live while
        `entry.generation == generations[entry.slot]` and `entry.expires` is inf (or ahead);
        anything else must go through `get`, which drops it."""
        self.generations: Sequence[int] = self._generations
        """The live generation counters (the same list `Generations` bumps)."""
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._table) + len(self._tcp)

    def size(self, proto: str = "udp") -> int:
        """Bytes the table of `proto` is counted at."""
        return self._bytes[proto]

    def get(self, key: bytes) -> Prepared | None:
        """Return the live UDP entry for `key`, dropping it if stale."""
        entry = self._table.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.generation != self._generations[entry.slot] or (
            entry.expires != math.inf and entry.expires <= self.clock()
        ):
            del self._table[key]
            self._bytes["udp"] -= entry.size
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def get_tcp(self, key: bytes) -> Prepared | None:
        """Return the live TCP entry for `key`, dropping it if stale."""
        entry = self._tcp.get(key)
        if entry is None:
            return None
        if entry.generation != self._generations[entry.slot] or (
            entry.expires != math.inf and entry.expires <= self.clock()
        ):
            del self._tcp[key]
            self._bytes["tcp"] -= entry.size
            return None
        self.hits += 1
        return entry

    def offer(
        self,
        key: bytes,
        wire: bytes,
        offer: Offer,
        on_hit: HitHook | None = None,
        *,
        proto: str = "udp",
        variants: Sequence[bytes] = (),
    ) -> None:
        """Store the reply the full chain just sent for `key`, if its offer is still current.

        `on_hit` defaults to the offer's own hooks; `variants` are the packed other orders of
        the reply (with `wire`, they are replayed in turn).
        """
        if offer.generation != self._generations[offer.slot]:
            return
        if offer.expires != math.inf and offer.expires <= self.clock():
            return
        hook = on_hit if on_hit is not None else offer.on_hit()
        tails = (wire[2:], *(v[2:] for v in variants)) if variants else ()
        entry = Prepared(wire[2:], offer.slot, offer.generation, offer.expires, hook, tails)
        self.put(key, entry, proto=proto)

    def put(self, key: bytes, entry: Prepared, *, proto: str = "udp") -> None:
        """Store an entry, evicting the oldest ones while a bound would be passed."""
        table = self._tcp if proto == "tcp" else self._table
        capacity, max_bytes = self._limits[proto]
        entry.size = entry_size(key, entry)
        if entry.size > max_bytes:
            return
        used = self._bytes[proto]
        old = table.pop(key, None)
        if old is not None:
            used -= old.size
        while table and (len(table) >= capacity or used + entry.size > max_bytes):
            _, victim = table.popitem(last=False)
            used -= victim.size
        table[key] = entry
        self._bytes[proto] = used + entry.size

    def clear(self) -> None:
        """Drop every entry."""
        self._table.clear()
        self._tcp.clear()
        self._bytes = {"udp": 0, "tcp": 0}


def entry_size(key: bytes, entry: Prepared) -> int:
    """What an entry is counted at: key, replies and the measured fixed overhead."""
    replies = sum(len(t) for t in entry.tails) if entry.tails else len(entry.tail)
    return len(key) + replies + ENTRY_OVERHEAD
