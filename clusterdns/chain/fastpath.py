"""The prepared-reply table: query bytes after the ID -> wire reply after the ID.

The server's responder looks a datagram up here before anything is decoded; a hit splices the
query's ID in front of the stored tail and sends. Plugins (kubernetes, cache) keep it exact: a
plugin that answers attaches an `Offer` to the writer (its zone slot's generation, an optional
expiry); the responder then stores the sent bytes in its listener's table, and the plugin bumps
the slot's generation on every change it sees, which invalidates all entries of the slot.
The key is every byte after the ID, so flags, letter case, EDNS size and DO are all part of
it, and a hit is byte-for-byte the reply the full chain would give.
Loop-thread only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

DEFAULT_CAPACITY: Final = 100_000


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
    on_hit: Callable[[str, int], None] | None = None
    """Called with (proto, family) on every hit, so metrics and log see the query."""


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


class FastPath:
    """One listener's bounded table of prepared replies (listeners may route names differently)."""

    def __init__(
        self,
        generations: Generations,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.clock = clock
        self._table: dict[bytes, Prepared] = {}
        self._generations = generations.current()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._table)

    def get(self, key: bytes) -> Prepared | None:
        """Return the live entry for `key`, dropping it if stale."""
        entry = self._table.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.generation != self._generations[entry.slot] or (
            entry.expires != math.inf and entry.expires <= self.clock()
        ):
            del self._table[key]
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def offer(
        self,
        key: bytes,
        wire: bytes,
        offer: Offer,
        on_hit: Callable[[str, int], None] | None = None,
    ) -> None:
        """Store the reply the full chain just sent for `key`, if its offer is still current."""
        if offer.generation == self._generations[offer.slot]:
            self.put(key, Prepared(wire[2:], offer.slot, offer.generation, offer.expires, on_hit))

    def put(self, key: bytes, entry: Prepared) -> None:
        """Store an entry, evicting the oldest when the table is full."""
        if key not in self._table and len(self._table) >= self.capacity:
            self._table.pop(next(iter(self._table)))
        self._table[key] = entry

    def clear(self) -> None:
        """Drop every entry."""
        self._table.clear()
