"""Parse the `cache` line and its block into one frozen CacheConfig (spec §8.1).

Every problem is raised through `Directive.error()` / `arg_error()`, so it names the file and
line. Defaults and limits are CoreDNS's. Nothing here runs per query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import parse_duration
from clusterdns.dnsutil.zones import KeyError_, zones_from_arg

NAME: Final = "cache"

SUCCESS: Final = "success"
DENIAL: Final = "denial"
SHARDS: Final = 256
"""CoreDNS splits each cache into 256 shards; capacities are whole multiples of it."""
MIN_SHARD_SIZE: Final = 4
"""Smallest entries per shard, so the smallest capacity is 1024."""
DEFAULT_CAPACITY: Final = 10000
"""Capacity before rounding; 9984 entries after it."""
DEFAULT_SUCCESS_TTL_S: Final = 3600
DEFAULT_DENIAL_TTL_S: Final = 1800
DEFAULT_MIN_TTL_S: Final = 5
DEFAULT_SERVFAIL_S: Final = 5.0
MAX_SERVFAIL_S: Final = 300.0
"""RFC 2308 §7.1: never cache SERVFAIL longer than 5 minutes."""
MAX_RECHECK_S: Final = 300.0
"""RFC 8767 §5: the failure recheck timer should not exceed 5 minutes."""
DEFAULT_STALE_S: Final = 3600.0
DEFAULT_PREFETCH_WINDOW_S: Final = 60.0
DEFAULT_PREFETCH_PERCENTAGE: Final = 10
MAX_TTL_FIELD: Final = 0xFFFFFFFF
_GO_INT: Final = re.compile(r"[+-]?[0-9]+")
_INT64: Final = 1 << 63


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassConfig:
    """Settings of one of the two caches (success or denial)."""

    capacity: int = DEFAULT_CAPACITY
    """CAPACITY as configured (entries); `size` is what is actually kept."""
    max_ttl_s: int
    """Longest time an entry is kept, seconds (TTLs above it are capped)."""
    min_ttl_s: int = DEFAULT_MIN_TTL_S
    """Shortest time an entry is kept, seconds (TTLs below it are raised); 0 allows 0."""

    @property
    def size(self) -> int:
        """Entries kept at most: CAPACITY rounded down to a multiple of 256, at least 1024."""
        per_shard = abs(self.capacity) // SHARDS * (1 if self.capacity >= 0 else -1)
        return max(per_shard, MIN_SHARD_SIZE) * SHARDS


@dataclass(frozen=True, slots=True, kw_only=True)
class Prefetch:
    """The `prefetch` option."""

    amount: int = 0
    """AMOUNT: hits without a gap of `window_s` that make an entry popular; 0 = off."""
    window_s: float = DEFAULT_PREFETCH_WINDOW_S
    """DURATION: the longest gap between hits that keeps counting them, seconds (default 1m)."""
    percentage: int = DEFAULT_PREFETCH_PERCENTAGE
    """Refresh when the remaining TTL drops to this percentage of the original (10..90)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeStale:
    """The `serve_stale` option (RFC 8767)."""

    duration_s: float = 0.0
    """DURATION: serve entries up to this long after they expired, seconds; 0 = off."""
    verify: bool = False
    """`verify`: refresh before answering with a stale entry (else `immediate`)."""
    verify_timeout_s: float = 0.0
    """VERIFY_TIMEOUT: wait this long for the verifying refresh, seconds; 0 = until it ends."""
    response_ttl_s: int = 0
    """RESPONSE_TTL: the TTL put on stale answers, whole seconds (default 0)."""
    recheck_s: float = 0.0
    """FAILURE_RECHECK: after a failed refresh of an entry, wait this long before another."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """One `cache` line."""

    zones: tuple[str, ...]
    """Names at or below these zones are cached (default: the server block's zones)."""
    success: ClassConfig = field(
        default_factory=lambda: ClassConfig(max_ttl_s=DEFAULT_SUCCESS_TTL_S)
    )
    denial: ClassConfig = field(default_factory=lambda: ClassConfig(max_ttl_s=DEFAULT_DENIAL_TTL_S))
    servfail_s: float = DEFAULT_SERVFAIL_S
    """How long SERVFAIL/NOTIMP replies are kept, seconds; 0 disables."""
    prefetch: Prefetch = field(default_factory=Prefetch)
    stale: ServeStale = field(default_factory=ServeStale)
    prefer_positive: bool = False
    """serve_stale_policy prefer_positive."""
    disable_success: tuple[str, ...] = ()
    """Zones whose positive replies are not stored."""
    disable_denial: tuple[str, ...] = ()
    """Zones whose negative (and SERVFAIL) replies are not stored."""
    keepttl: bool = False
    """Serve the TTL an entry was stored with instead of the remaining one."""

    @property
    def zones_label(self) -> str:
        """The `zones` metrics label: the zones joined with `,`."""
        return ",".join(self.zones)


def parse(d: Directive, block_zones: Sequence[str]) -> CacheConfig:
    """Parse a `cache [TTL] [ZONES...] { ... }` line.

    Raises:
        CorefileError: any invalid argument or option, naming its file and line.
    """
    args = d.values
    success_ttl, denial_ttl = DEFAULT_SUCCESS_TTL_S, DEFAULT_DENIAL_TTL_S
    first = 0
    if args:
        ttl = _go_int(args[0])
        if ttl is not None:
            if ttl <= 0:
                raise d.arg_error(0, f"cache TTL can not be zero or negative: {ttl}")
            success_ttl = denial_ttl = ttl
            first = 1
    zones: list[str] = []
    for i in range(first, len(args)):
        try:
            zones.extend(zones_from_arg(args[i]))
        except KeyError_ as exc:
            raise d.arg_error(i, str(exc)) from exc
    success = ClassConfig(max_ttl_s=success_ttl)
    denial = ClassConfig(max_ttl_s=denial_ttl)
    servfail_s = DEFAULT_SERVFAIL_S
    prefetch = Prefetch()
    stale: ServeStale | None = None
    policy: Directive | None = None
    disabled: dict[str, tuple[str, ...]] = {SUCCESS: (), DENIAL: ()}
    keepttl = False
    for opt in d.options:
        opt.expect_no_block()
        name = opt.name
        if name == SUCCESS:
            success = _class(opt, success)
        elif name == DENIAL:
            denial = _class(opt, denial)
        elif name == "prefetch":
            prefetch = _prefetch(opt)
        elif name == "serve_stale":
            stale = _serve_stale(opt)
        elif name == "serve_stale_policy":
            if policy is not None:
                raise opt.error("serve_stale_policy can only be specified once")
            policy = opt
            value = opt.expect_args(1)[0]
            if value.lower() != "prefer_positive":
                raise opt.arg_error(0, f"invalid serve_stale_policy: {value}")
        elif name == "servfail":
            servfail_s = _servfail(opt)
        elif name == "disable":
            kind, zones_off = _disable(opt)
            disabled[kind] = zones_off
        elif name == "keepttl":
            opt.expect_args(0)
            keepttl = True
        else:
            raise opt.error(f"unknown property '{name}'")
    if policy is not None and stale is None:
        raise policy.error("serve_stale_policy requires serve_stale")
    return CacheConfig(
        zones=tuple(dict.fromkeys(zones)) if zones else tuple(block_zones),
        success=success,
        denial=denial,
        servfail_s=servfail_s,
        prefetch=prefetch,
        stale=stale or ServeStale(),
        prefer_positive=policy is not None,
        disable_success=disabled[SUCCESS],
        disable_denial=disabled[DENIAL],
        keepttl=keepttl,
    )


def _go_int(text: str) -> int | None:
    """The value of `text` as Go's strconv.Atoi reads it, or None when it is not an integer."""
    if _GO_INT.fullmatch(text) is None:
        return None
    value = int(text)
    return value if -_INT64 <= value < _INT64 else None


def _int_arg(opt: Directive, index: int, what: str) -> int:
    text = opt.values[index]
    value = _go_int(text)
    if value is None:
        raise opt.arg_error(index, f"{opt.name}: {what} must be an integer, got '{text}'")
    return value


def _duration_arg(opt: Directive, index: int, what: str) -> float:
    text = opt.values[index]
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise opt.arg_error(index, f"{opt.name}: invalid {what}: {exc}") from exc


def _class(opt: Directive, current: ClassConfig) -> ClassConfig:
    """`success|denial CAPACITY [TTL] [MINTTL]`."""
    args = opt.expect_args(1, 3)
    capacity = _int_arg(opt, 0, "CAPACITY")
    max_ttl, min_ttl = current.max_ttl_s, current.min_ttl_s
    if len(args) > 1:
        max_ttl = _int_arg(opt, 1, "TTL")
        if max_ttl <= 0:
            raise opt.arg_error(1, f"cache TTL can not be zero or negative: {max_ttl}")
    if len(args) > 2:
        min_ttl = _int_arg(opt, 2, "MINTTL")
        if min_ttl < 0:
            raise opt.arg_error(2, f"cache min TTL can not be negative: {min_ttl}")
    return ClassConfig(capacity=capacity, max_ttl_s=max_ttl, min_ttl_s=min_ttl)


def _prefetch(opt: Directive) -> Prefetch:
    """`prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`."""
    args = opt.expect_args(1, 3)
    amount = _int_arg(opt, 0, "AMOUNT")
    if amount < 0:
        raise opt.arg_error(0, f"prefetch amount should be positive: {amount}")
    window_s = DEFAULT_PREFETCH_WINDOW_S
    percentage = DEFAULT_PREFETCH_PERCENTAGE
    if len(args) > 1:
        window_s = _duration_arg(opt, 1, "duration")
    if len(args) > 2:
        pct = args[2]
        if not pct.endswith("%"):
            raise opt.arg_error(
                2, f"last character of percentage should be `%`, but is: '{pct[-1:]}'"
            )
        value = _go_int(pct[:-1])
        if value is None:
            raise opt.arg_error(2, f"prefetch: PERCENTAGE must be an integer, got '{pct}'")
        if not 10 <= value <= 90:
            raise opt.arg_error(2, f"percentage should fall in range [10, 90]: {value}")
        percentage = value
    return Prefetch(amount=amount, window_s=window_s, percentage=percentage)


def _serve_stale(opt: Directive) -> ServeStale:
    """Parse `serve_stale` (RFC 8767).

    `serve_stale [DURATION] [immediate [RESPONSE_TTL [FAILURE_RECHECK]] |
    verify [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]`.
    """
    args = opt.expect_args(0, 5)
    duration_s = DEFAULT_STALE_S
    if args:
        duration_s = _duration_arg(opt, 0, "duration")
        if duration_s < 0:
            raise opt.arg_error(0, "invalid negative duration for serve_stale")
    if len(args) < 2:
        return ServeStale(duration_s=duration_s)
    mode = args[1].lower()
    if mode not in ("immediate", "verify"):
        raise opt.arg_error(1, f"invalid value for serve_stale refresh mode: {args[1]}")
    verify = mode == "verify"
    timeout_s = 0.0
    rest = 2
    if verify and len(args) > 2:
        timeout_s = _duration_arg(opt, 2, "verify timeout")
        if timeout_s < 0:
            raise opt.arg_error(2, "invalid negative timeout for serve_stale verify")
        rest = 3
    elif not verify and len(args) > 4:
        raise opt.arg_error(
            4, "serve_stale: immediate takes at most RESPONSE_TTL and FAILURE_RECHECK"
        )
    ttl_s = 0
    if len(args) > rest:
        ttl = _duration_arg(opt, rest, "response TTL")
        if ttl < 0:
            raise opt.arg_error(rest, "invalid negative response TTL for serve_stale")
        if ttl != int(ttl):
            raise opt.arg_error(rest, "serve_stale response TTL must be a whole number of seconds")
        if ttl > MAX_TTL_FIELD:
            raise opt.arg_error(rest, "serve_stale response TTL exceeds the DNS TTL range")
        ttl_s = int(ttl)
    recheck_s = 0.0
    if len(args) > rest + 1:
        recheck_s = _duration_arg(opt, rest + 1, "failure recheck")
        if recheck_s < 0:
            raise opt.arg_error(rest + 1, "invalid negative failure recheck for serve_stale")
        if recheck_s > MAX_RECHECK_S:
            raise opt.arg_error(rest + 1, "serve_stale failure recheck cannot exceed 5 minutes")
    return ServeStale(
        duration_s=duration_s,
        verify=verify,
        verify_timeout_s=timeout_s,
        response_ttl_s=ttl_s,
        recheck_s=recheck_s,
    )


def _servfail(opt: Directive) -> float:
    """`servfail DURATION`."""
    opt.expect_args(1)
    value = _duration_arg(opt, 0, "duration")
    if value < 0:
        raise opt.arg_error(0, "invalid negative ttl for servfail")
    if value > MAX_SERVFAIL_S:
        raise opt.arg_error(0, "caching SERVFAIL responses over 5 minutes is not permitted")
    return value


def _disable(opt: Directive) -> tuple[str, tuple[str, ...]]:
    """`disable success|denial [ZONES...]`; no zones means every zone."""
    args = opt.expect_args(1, -1)
    kind = args[0]
    if kind not in (SUCCESS, DENIAL):
        raise opt.arg_error(0, f'cache type for disable must be "{SUCCESS}" or "{DENIAL}"')
    zones: list[str] = []
    for i in range(1, len(args)):
        try:
            zones.extend(zones_from_arg(args[i]))
        except KeyError_ as exc:
            raise opt.arg_error(i, f"invalid disabled zone: {args[i]}: {exc}") from exc
    return kind, tuple(dict.fromkeys(zones)) if zones else (".",)
