"""Server blocks -> one plugin chain per block, built in ORDER; listeners -> zones -> blocks.

Every plugin's setup runs here, before any socket opens, and every error is collected so that one
run reports the problems of all plugins (a syntax error has already stopped the parser). A setup
that opens or stats a file named by an argument holding a NUL byte gets ValueError from the OS
layer, not OSError: that is reported as the argument's CorefileError too, whatever the plugin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clusterdns.chain.handler import Handler, PluginFactory
from clusterdns.chain.order import ORDER
from clusterdns.chain.setup import BlockSettings, PluginSpec, ProcessContext, SetupContext
from clusterdns.corefile import Directive, ServerBlock
from clusterdns.corefile.directive import nul_message
from clusterdns.dnsutil.zones import KeyError_, ZoneAddr, parse_key
from clusterdns.errors import CorefileError, CorefileErrors

ListenKey = tuple[str, str, int]
"""(scheme, address, port); address "" is the wildcard."""


@dataclass
class Block:
    """A server block ready to serve."""

    settings: BlockSettings
    head: Handler | None
    plugins: tuple[str, ...]
    """Query-handling plugins, in chain order."""
    fastpath: bool = False
    """Whether replies offered by its plugins may be stored in the fast path (see PluginSpec)."""


@dataclass
class Config:
    """A fully set-up configuration (nothing bound yet)."""

    blocks: list[Block]
    process: ProcessContext
    listeners: dict[ListenKey, dict[str, Block]] = field(default_factory=dict)


def build(
    server_blocks: list[ServerBlock],
    *,
    specs: Mapping[str, PluginSpec],
    dns_port: int,
    process: ProcessContext,
) -> Config:
    """Run every setup and assemble chains and listeners.

    Raises:
        CorefileErrors: every key and setup error found, each with file:line.
    """
    errors: list[CorefileError] = []
    blocks: list[Block] = []
    for index, sb in enumerate(server_blocks):
        keys: list[ZoneAddr] = []
        for tok in sb.keys:
            try:
                keys.extend(parse_key(tok.text, dns_port))
            except KeyError_ as exc:
                errors.append(tok.error(str(exc)))
        if not keys:
            continue
        settings = BlockSettings(
            index, tuple(keys), sb.file, sb.line, tuple(d.name for d in sb.directives)
        )
        ctx = SetupContext(settings, process)
        factories: list[tuple[str, PluginFactory]] = []
        for name in ORDER:
            lines = sb.lines_of(name)
            if not lines:
                continue
            spec = specs.get(name)
            if spec is None:
                errors.append(lines[0].error(f"plugin {name!r} is not supported by clusterdns"))
                continue
            if spec.once and len(lines) > 1:
                errors.append(lines[1].error("this plugin can only be used once per Server Block"))
                continue
            try:
                factory = spec.setup(lines, ctx)
            except CorefileError as exc:
                errors.append(exc)
                continue
            except ValueError as exc:
                found = _nul_error(lines, exc)
                if found is None:
                    raise
                errors.append(found)
                continue
            if factory is not None:
                factories.append((name, factory))
        head: Handler | None = None
        for _, factory in reversed(factories):
            head = factory(head)
        settings.head = head
        replay_safe = all(specs[n].replay_safe for n in settings.directives if n in specs)
        blocks.append(Block(settings, head, tuple(n for n, _ in factories), fastpath=replay_safe))
    config = Config(blocks, process)
    for block in blocks:
        addresses = block.settings.listen or [""]
        for key in block.settings.keys:
            for addr in addresses:
                zones = config.listeners.setdefault((key.scheme, addr, key.port), {})
                if key.zone in zones and zones[key.zone] is not block:
                    where = f"{key.scheme}://{key.zone}:{key.port}"
                    errors.append(
                        CorefileError(
                            f"cannot serve {where} - it is already defined",
                            file=block.settings.file,
                            line=block.settings.line,
                        )
                    )
                    continue
                zones[key.zone] = block
    if errors:
        raise CorefileErrors(errors)
    return config


def _nul_error(lines: Sequence[Directive], exc: ValueError) -> CorefileError | None:
    """The CorefileError for a setup's "embedded null byte" ValueError, at the NUL argument.

    None when the error is another one, or no argument of these lines holds a NUL byte.
    """
    if "null" not in str(exc):
        return None
    for top in lines:
        for line in top.walk():
            for index, tok in enumerate(line.args):
                if "\0" in tok.text:
                    return line.arg_error(index, nul_message(tok.text))
    return None
