"""The shared `fallthrough [ZONES...]` option (kubernetes, hosts, template, k8s_external)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clusterdns.dnsutil.names import is_subdomain
from clusterdns.dnsutil.zones import KeyError_, zones_from_arg


@dataclass(frozen=True, slots=True)
class Fallthrough:
    """Zones in which a would-be NXDOMAIN is passed to the next plugin; empty = never."""

    zones: tuple[str, ...] = ()

    def through(self, name: str) -> bool:
        """Whether a lower-case absolute `name` falls through."""
        return any(is_subdomain(name, z) for z in self.zones)

    @property
    def enabled(self) -> bool:
        """Whether fallthrough was configured at all."""
        return bool(self.zones)


NEVER = Fallthrough(())


def parse_fallthrough(values: Sequence[str]) -> Fallthrough:
    """Build from the option's arguments: no zones means every zone (`.`).

    Zones are normalised like server-block keys (CoreDNS `NormalizeExact`): a scheme and a port
    are dropped, CIDRs become reverse zones.

    Raises:
        ValueError: a zone is not a valid domain name or CIDR.
    """
    if not values:
        return Fallthrough((".",))
    zones: list[str] = []
    for v in values:
        try:
            zones.extend(zones_from_arg(v))
        except KeyError_ as exc:
            raise ValueError(str(exc)) from exc
    return Fallthrough(tuple(zones))
