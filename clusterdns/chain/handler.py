"""The plugin contract: a Handler serves a query; a PluginFactory builds it around the next one.

A handler does exactly one of: answer (write, return the rcode), pass on (`next_or_failure`),
fail without writing (return SERVFAIL/REFUSED/FORMERR/NOTIMP, or raise PluginError), wrap the
writer, or drop (return without writing and with a non-error rcode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.errors import PluginError


class Handler(Protocol):
    """One plugin instance in a chain."""

    name: ClassVar[str]

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Serve one query; return the rcode (written or for the server to write)."""
        ...


PluginFactory = Callable[[Handler | None], Handler]
"""Receives the next handler (None at the end of the chain) and returns this plugin's handler."""


async def next_or_failure(owner: str, nxt: Handler | None, req: Request, w: ResponseWriter) -> int:
    """Pass the query on; with no next plugin, fail as CoreDNS does."""
    if nxt is None:
        raise PluginError(owner, "no next plugin found")
    return await nxt.serve(req, w)
