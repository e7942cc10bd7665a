"""The account table of response rate limiting: one balance per response category, bounded.

Accounting follows coredns/rrl (plugins/rrl/rrl.go), which follows BIND 9: an account's balance
is kept as the time from which its next response is allowed, credited continuously at the
category's rate, never more than one second's worth of allowance in hand and never more than
`window` in debt. A response is limited while its balance is negative. The table holds at most
`max_size` accounts; beyond that the least recently used one is recycled (BIND's choice;
coredns/rrl instead stops limiting new categories, which lets a flood of spoofed sources switch
limiting off). Loop-thread only.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

SECOND_NS: Final = 1_000_000_000

Clock = Callable[[], int]
"""Monotonic nanoseconds (time.monotonic_ns); tests inject their own."""

log = logging.getLogger("clusterdns.plugins.rrl")


@dataclass(slots=True)
class Account:
    """One category's balance."""

    allow_ns: int
    """The next response is within the allowance if the clock is at or after this."""
    slip_countdown: int
    """At 1, the next limited response slips through (TC) instead of being dropped."""


@dataclass(frozen=True, slots=True)
class Debit:
    """The outcome of charging one response (or request) to an account."""

    balance_ns: int
    """Negative: over the limit."""
    slip: bool
    """Over the limit, but this one is sent truncated instead of dropped."""

    @property
    def limited(self) -> bool:
        """Whether the response is over the limit."""
        return self.balance_ns < 0


ALLOWED: Final = Debit(0, False)


class Table:
    """Accounts by token, least recently used first."""

    def __init__(
        self,
        *,
        window_ns: int,
        slip_ratio: int,
        max_size: int,
        clock: Clock = time.monotonic_ns,
    ) -> None:
        self.window_ns = window_ns
        self.slip_ratio = slip_ratio
        self.max_size = max_size
        self.clock = clock
        self.accounts: OrderedDict[Hashable, Account] = OrderedDict()
        self.recycled = 0
        """Accounts dropped to make room (the table was full)."""

    def __len__(self) -> int:
        return len(self.accounts)

    def debit(self, token: Hashable, allowance_ns: int) -> Debit:
        """Charge one unit of `allowance_ns` to the account of `token`, opening it if new."""
        now = self.clock()
        account = self.accounts.get(token)
        if account is None:
            if self.max_size <= 0:
                return ALLOWED
            if len(self.accounts) >= self.max_size:
                self.accounts.popitem(last=False)
                if self.recycled == 0:
                    log.warning(
                        "rate limit table full (%d accounts): recycling the least recently used",
                        self.max_size,
                    )
                self.recycled += 1
            # A new account starts with one second's allowance less this response.
            self.accounts[token] = Account(now - SECOND_NS + allowance_ns, self.slip_ratio)
            return ALLOWED
        self.accounts.move_to_end(token)
        balance = now - account.allow_ns - allowance_ns
        if balance >= SECOND_NS:
            balance = SECOND_NS - allowance_ns
        elif balance < -self.window_ns:
            balance = -self.window_ns
        account.allow_ns = now - balance
        if balance > 0 or account.slip_countdown == 0:
            return Debit(balance, False)
        if account.slip_countdown == 1:
            account.slip_countdown = self.slip_ratio
            return Debit(balance, True)
        account.slip_countdown -= 1
        return Debit(balance, False)
