"""Route a query name to the server block of the longest matching zone (spec §4.2)."""

from __future__ import annotations

from clusterdns.chain.build import Block


class Mux:
    """Zones served on one listener -> blocks."""

    def __init__(self, zones: dict[str, Block]) -> None:
        self.zones = dict(zones)

    def route(self, name: str) -> tuple[str, Block] | None:
        """Return (matched zone, block) for a lower-case absolute name, or None (REFUSED)."""
        zones = self.zones
        n = name
        while True:
            block = zones.get(n)
            if block is not None:
                return n, block
            if n == ".":
                return None
            dot = n.find(".")
            n = n[dot + 1 :] or "."
