"""CoreDNS's log line format: `[LEVEL] plugin/NAME: message`, no timestamps, on stdout.

A logger under `clusterdns.plugins.NAME` prints with the `plugin/NAME: ` prefix; any other logger
(the server core, the query log) prints the bare message.
"""

from __future__ import annotations

import logging
import sys

_PLUGINS = "clusterdns.plugins."
_LEVELS = {"CRITICAL": "FATAL", "WARN": "WARNING"}


class CoreDNSFormatter(logging.Formatter):
    """Format records as CoreDNS does."""

    def format(self, record: logging.LogRecord) -> str:
        """Return `[LEVEL] [plugin/NAME: ]message` (plus a traceback when one is attached)."""
        level = _LEVELS.get(record.levelname, record.levelname)
        prefix = ""
        if record.name.startswith(_PLUGINS):
            prefix = f"plugin/{record.name[len(_PLUGINS) :].split('.', 1)[0]}: "
        text = f"[{level}] {prefix}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(level: int = logging.INFO) -> None:
    """Send every clusterdns log line to stdout in CoreDNS's format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CoreDNSFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
