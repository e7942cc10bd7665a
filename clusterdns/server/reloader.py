"""Reloading the Corefile of a running process: SIGUSR1, and what the `reload` plugin calls.

One `Reloading` per process. A restart reads the Corefile from where the process loaded it, sets
the new configuration up completely (with the running configuration's resources as `previous`,
so an unchanged watch cache is taken over) and hands it to `Server.swap`. Restarts never overlap.
Every configuration gets its own `ConfigReloader`: the `chain.setup.Reloader` its `reload`
plugin sees, which remembers the server blocks it was set up from.

Log lines are CoreDNS's (coredns/caddy `Restart`): `[INFO] Reloading`, then `[INFO] Reloading
complete`, or `[ERROR] Restart failed: <error>` with the error raised again as `starting with
listener file descriptors: <error>` for the caller to log (`SIGUSR1: ...`, or the plugin's line).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from clusterdns.chain.build import Config
from clusterdns.chain.setup import Resources
from clusterdns.corefile import ServerBlock
from clusterdns.errors import ClusterDNSError, CorefileError, ServerError
from clusterdns.server.lifecycle import Server

log = logging.getLogger("clusterdns")

ReadBlocks = Callable[[], list[ServerBlock]]
"""Read and parse the Corefile again (raises CorefileError / ClusterDNSError)."""
SetUp = Callable[[list[ServerBlock], "Reloading", Resources | None], Config]
"""Set server blocks up into a configuration whose reloader comes from the given `Reloading`,
taking over what it can from `previous` (raises ClusterDNSError)."""


class Reloading:
    """The process's reload machinery; `attach` the server once it exists."""

    def __init__(self, read: ReadBlocks, setup: SetUp) -> None:
        self._read = read
        self._setup = setup
        self._lock = asyncio.Lock()
        self.server: Server | None = None

    def attach(self, server: Server) -> None:
        """Reload this server from now on."""
        self.server = server

    def handle(self, blocks: Sequence[ServerBlock]) -> ConfigReloader:
        """The reloader of a configuration set up from `blocks`."""
        return ConfigReloader(self, list(blocks))

    def read(self) -> list[ServerBlock]:
        """Read and parse the Corefile from its source (see `ReadBlocks`)."""
        return self._read()

    async def restart(self, blocks: list[ServerBlock]) -> None:
        """Set `blocks` up and switch the server to them (the `reload` plugin's path).

        Raises:
            ServerError: the new configuration failed; the running one keeps serving.
        """
        await self._restart(lambda: blocks)

    async def reload(self) -> None:
        """Read the Corefile and restart with it, whether or not it changed (SIGUSR1).

        Raises:
            ClusterDNSError: the Corefile cannot be read, or the new configuration failed; the
                running one keeps serving.
        """
        try:
            blocks = self._read()
        except CorefileError as exc:
            # A syntax error surfaces inside the restart, as in CoreDNS (which parses there).
            error = exc

            def fail() -> list[ServerBlock]:
                raise error

            await self._restart(fail)
            return
        await self._restart(lambda: blocks)

    async def _restart(self, blocks_of: Callable[[], list[ServerBlock]]) -> None:
        async with self._lock:
            log.info("Reloading")
            try:
                server = self.server
                if server is None:
                    raise ServerError("no server is running")
                config = self._setup(blocks_of(), self, server.config.process.resources)
                await server.swap(config)
            except Exception as exc:
                text = _one_line(exc)
                unexpected = not isinstance(exc, (ClusterDNSError, OSError))
                log.error("Restart failed: %s", text, exc_info=unexpected)
                raise ServerError(f"starting with listener file descriptors: {text}") from exc
            log.info("Reloading complete")


class ConfigReloader:
    """One configuration's view of the process's reload machinery (a `chain.setup.Reloader`)."""

    def __init__(self, reloading: Reloading, blocks: list[ServerBlock]) -> None:
        self._reloading = reloading
        self._blocks = blocks

    @property
    def blocks(self) -> Sequence[ServerBlock]:
        """The server blocks this configuration was set up from."""
        return self._blocks

    def read(self) -> list[ServerBlock]:
        """Read and parse the Corefile again from where the process loaded it."""
        return self._reloading.read()

    async def restart(self, blocks: list[ServerBlock]) -> None:
        """Set `blocks` up and switch the running server to them."""
        await self._reloading.restart(blocks)


def _one_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).replace("\n", "; ")
