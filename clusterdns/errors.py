"""The one exception tree: everything clusterdns raises on purpose descends from ClusterDNSError."""

from __future__ import annotations


class ClusterDNSError(Exception):
    """Base of everything clusterdns raises on purpose."""


class CorefileError(ClusterDNSError):
    """A Corefile problem, always naming the file and line it was found at."""

    def __init__(self, message: str, *, file: str, line: int, directive: str | None = None) -> None:
        where = f"{file}:{line}: " + (f"{directive}: " if directive else "")
        super().__init__(where + message)
        self.file = file
        self.line = line
        self.directive = directive
        self.message = message


class CorefileErrors(ClusterDNSError):
    """Several Corefile problems found in one pass (setup errors of different plugins)."""

    def __init__(self, errors: list[CorefileError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class PluginError(ClusterDNSError):
    """An error a plugin returns up the chain (CoreDNS's `(rcode, error)`).

    The `errors` plugin logs it; the server answers with `rcode` (default SERVFAIL) unless a
    reply was already written. It is not a crash: crashes are any other exception. The text is
    `plugin/<name>: <message>`, or the bare message with `bare=True` (errors that CoreDNS passes
    up unwrapped, such as forward's `read udp ...: i/o timeout`).
    """

    def __init__(self, plugin: str, message: str, *, rcode: int = 2, bare: bool = False) -> None:
        super().__init__(message if bare else f"plugin/{plugin}: {message}")
        self.plugin = plugin
        self.message = message
        self.rcode = rcode


class ServerError(ClusterDNSError):
    """The server could not start or run: a port in use, an address that cannot be bound."""


class WatchError(ClusterDNSError):
    """The Kubernetes watch failed in a way that needs an operator (RBAC, bad credentials)."""
