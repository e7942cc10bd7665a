"""The `errors` handler: log the errors returned up the chain, consolidating repeated ones.

A PluginError raised by any plugin after this one is logged as
`<rcode> <qname> <qtype>: <error text>` and turned back into its rcode; the reply is never
changed. Any other exception is a crash and passes through untouched for the server to handle.
Consolidation windows are timed with the event loop's `call_later`, started lazily by the first
matching error. Everything here runs on the loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.errors import PluginError
from clusterdns.plugins.errors.config import NAME, Consolidate, ErrorsConfig

log = logging.getLogger(__name__)


class Cancellable(Protocol):
    """A scheduled callback that can be called off (asyncio.TimerHandle is one)."""

    def cancel(self) -> None:
        """Do not run the callback."""


CallLater = Callable[[float, Callable[[], None]], Cancellable]
"""Schedule a callback after a delay in seconds (the shape of `loop.call_later`)."""


def loop_call_later(delay_s: float, callback: Callable[[], None]) -> Cancellable:
    """Schedule `callback` on the running event loop."""
    return asyncio.get_running_loop().call_later(delay_s, callback)


class Window:
    """The counting window of one `consolidate` rule. Loop-thread only."""

    def __init__(self, rule: Consolidate, call_later: CallLater) -> None:
        self.rule = rule
        self.count = 0
        """Matching errors seen since the window opened (0: no window open)."""
        self._call_later = call_later
        self._timer: Cancellable | None = None

    @property
    def open(self) -> bool:
        """Whether a window is counting (its end is scheduled)."""
        return self._timer is not None

    def add(self) -> bool:
        """Count one matching error, opening the window on the first.

        Returns:
            True when the caller must log this error itself (the first one with `show_first`).
        """
        self.count += 1
        if self.count > 1:
            return False
        self._timer = self._call_later(self.rule.period_s, self.close)
        return self.rule.show_first

    def close(self) -> None:
        """End the window now: log the summary if one is due and reset the count."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        count, self.count = self.count, 0
        if count == 0 or (count == 1 and self.rule.show_first):
            return
        log.log(
            self.rule.level,
            "%d errors like '%s' occurred in last %s",
            count,
            self.rule.pattern.pattern,
            self.rule.period_text,
        )


class Consolidator:
    """All consolidation windows of one `errors` plugin; shared by its handler and shutdown hook."""

    def __init__(
        self, rules: Sequence[Consolidate], *, call_later: CallLater = loop_call_later
    ) -> None:
        self.windows = tuple(Window(rule, call_later) for rule in rules)
        self.stopped = False
        """After `stop`, matching errors are logged one by one at their rule's level."""

    def match(self, text: str) -> Window | None:
        """The window of the first rule whose pattern matches `text`, if any."""
        for window in self.windows:
            if window.rule.pattern.search(text):
                return window
        return None

    def flush(self) -> None:
        """End every open window now, printing the summaries that are due."""
        for window in self.windows:
            window.close()

    async def stop(self) -> None:
        """Shutdown hook: flush, then stop consolidating."""
        self.stopped = True
        self.flush()


class Errors:
    """Log errors returned by the plugins after this one."""

    name: ClassVar[str] = NAME

    def __init__(
        self, config: ErrorsConfig, nxt: Handler | None, consolidator: Consolidator
    ) -> None:
        self.config = config
        self.next = nxt
        self.consolidator = consolidator

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Pass the query on; log a returned error and answer with its rcode."""
        try:
            return await next_or_failure(NAME, self.next, req, w)
        except PluginError as exc:
            self.report(req, exc)
            return exc.rcode

    def report(self, req: Request, exc: PluginError) -> None:
        """Log one returned error, or count it in its consolidation window."""
        text = str(exc)
        level = logging.ERROR
        if self.consolidator.windows:
            window = self.consolidator.match(text)
            if window is not None:
                level = window.rule.level
                if not self.consolidator.stopped and not window.add():
                    return
        log.log(level, "%d %s %s: %s", exc.rcode, req.name, req.type_name, text)
