r"""Route a query name to the server block of the longest matching zone (spec §4.2).

Names are the chain's escaped text (`Request.name`): only a dot after an even number of
backslashes ends a label, so `evil\.cluster.local.` (the label `evil.cluster` under `local.`)
is routed to `local.` or the root, never to `cluster.local.` (as CoreDNS's `dns.NextLabel`).
"""

from __future__ import annotations

from clusterdns.chain.build import Block
from clusterdns.dnsutil.names import parent


class Mux:
    """Zones served on one listener -> blocks."""

    def __init__(self, zones: dict[str, Block]) -> None:
        self.zones = dict(zones)

    def route(self, name: str) -> tuple[str, Block] | None:
        """Return (matched zone, block) for a lower-case absolute name, or None (REFUSED)."""
        zones = self.zones
        n = name
        if "\\" in n:
            return self._route_escaped(n)
        while True:
            block = zones.get(n)
            if block is not None:
                return n, block
            if n == ".":
                return None
            dot = n.find(".")
            n = n[dot + 1 :] or "."

    def _route_escaped(self, name: str) -> tuple[str, Block] | None:
        """`route` for a name holding a backslash: up one label at a time, escapes kept."""
        zones = self.zones
        n = name
        while True:
            block = zones.get(n)
            if block is not None:
                return n, block
            if n == ".":
                return None
            n = parent(n)
