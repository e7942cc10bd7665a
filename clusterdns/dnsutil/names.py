"""Domain-name helpers: absolute lower-case form, zone matching, validation."""

from __future__ import annotations

from collections.abc import Iterable


def fqdn(name: str) -> str:
    """Return `name` absolute (with a trailing dot); `""` becomes the root `.`."""
    if not name or name == ".":
        return "."
    return name if name.endswith(".") else name + "."


def normalize(name: str) -> str:
    """Absolute and lower-cased (DNS case folding is ASCII only)."""
    return fqdn(name).lower()


def is_subdomain(name: str, zone: str) -> bool:
    """Whether lower-case absolute `name` is at or below lower-case absolute `zone`."""
    if zone == ".":
        return True
    return name == zone or name.endswith("." + zone)


def match_zone(name: str, zones: Iterable[str]) -> str | None:
    """Return the longest zone in `zones` that contains lower-case absolute `name`, or None."""
    best: str | None = None
    for z in zones:
        if is_subdomain(name, z) and (best is None or len(z) > len(best)):
            best = z
    return best


def valid_domain(name: str) -> bool:
    """Whether an absolute name is a syntactically valid domain name (label and length limits)."""
    if name == ".":
        return True
    if len(name) > 255 or not name.endswith("."):
        return False
    labels = name[:-1].split(".")
    return all(0 < len(label) <= 63 for label in labels)


def is_reverse(zone: str) -> bool:
    """Whether an absolute zone is in-addr.arpa. or ip6.arpa. or a name below them."""
    z = zone.lower()
    return any(z == apex or z.endswith("." + apex) for apex in ("in-addr.arpa.", "ip6.arpa."))


def strip_zone(name: str, zone: str) -> str:
    """Return the part of `name` left of `zone`, without the joining dot ("" for the apex)."""
    if zone == ".":
        return name[:-1] if name != "." else ""
    if len(name) == len(zone):
        return ""
    return name[: len(name) - len(zone) - 1]
