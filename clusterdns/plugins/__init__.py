"""Every directive clusterdns implements, found by walking this package.

A plugin is a subpackage whose directory name is its directive, its logger name
(`clusterdns.plugins.<name>` prints as `plugin/<name>`) and its metric subsystem. It exports
`SPEC: PluginSpec`. Adding a plugin is adding a subpackage; nothing else is edited (every CoreDNS
directive is already in `chain/order.py`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Final

from clusterdns.chain.setup import PluginSpec


def _discover() -> dict[str, PluginSpec]:
    found: dict[str, PluginSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, PluginSpec):
            found[spec.name] = spec
    return found


SETUP: Final[dict[str, PluginSpec]] = _discover()
"""Directive name -> PluginSpec, sorted by name."""
