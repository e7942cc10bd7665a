"""Query-log formats compiled once at setup into a %-template and a tuple of field getters.

Per query the plugin builds one Entry and renders it: each getter reads only what its
placeholder needs, so unused fields (the reply size, say) cost nothing. A `{...}` that is not a
known placeholder stays in the line as written; `{/label}` is request metadata, which no plugin
of clusterdns provides yet, so it prints `-`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dnslib import DNSRecord

from clusterdns.chain.request import Request
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.response import uncompressed_size

EMPTY: Final = "-"
"""Printed for a value that does not exist (no reply, absent metadata)."""

NS_PER_S: Final = 1_000_000_000


class Entry:
    """One query as the log line sees it, after the rest of the chain has run."""

    __slots__ = ("msg", "rcode", "req", "start_ns")

    def __init__(self, req: Request, msg: DNSRecord | None, rcode: int, start_ns: int) -> None:
        self.req = req
        self.msg = msg
        """The reply written, or the error reply the server will write; None: no reply."""
        self.rcode = rcode
        """The reply's full rcode (meaningless when `msg` is None)."""
        self.start_ns = start_ns
        """`time.perf_counter_ns()` when the log plugin received the query."""


Getter = Callable[[Entry], str]


def bracketed(ip: str) -> str:
    """An address as RFC 3986 writes it in a URI: IPv6 in brackets."""
    return f"[{ip}]" if ":" in ip else ip


def seconds_text(ns: int) -> str:
    """Nanoseconds as seconds with an `s` suffix, shortest exact decimal (`0.000151s`, `2s`)."""
    whole, frac = divmod(ns, NS_PER_S)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return text + "s"


def flags_text(msg: DNSRecord) -> str:
    """The set header bits, comma-separated, in the order qr,aa,tc,rd,ra,z,ad,cd."""
    h = msg.header
    bits = (
        ("qr", h.qr), ("aa", h.aa), ("tc", h.tc), ("rd", h.rd),
        ("ra", h.ra), ("z", h.z), ("ad", h.ad), ("cd", h.cd),
    )  # fmt: skip
    return ",".join(name for name, value in bits if value)


def rcode_text(code: int) -> str:
    """The rcode mnemonic, or its number when it has none."""
    name = rc.RCODE_NAMES.get(code)
    return name if name is not None else str(code)


def _rcode(e: Entry) -> str:
    return EMPTY if e.msg is None else rcode_text(e.rcode)


def _rsize(e: Entry) -> str:
    return "0" if e.msg is None else str(uncompressed_size(e.msg))


def _rflags(e: Entry) -> str:
    return EMPTY if e.msg is None else flags_text(e.msg)


def _duration(e: Entry) -> str:
    return seconds_text(time.perf_counter_ns() - e.start_ns)


def _metadata(e: Entry) -> str:
    return EMPTY


FIELDS: Final[dict[str, Getter]] = {
    "{type}": lambda e: e.req.type_name,
    "{name}": lambda e: e.req.name,
    "{class}": lambda e: e.req.class_name,
    "{proto}": lambda e: e.req.proto,
    "{remote}": lambda e: bracketed(e.req.remote[0]),
    "{local}": lambda e: bracketed(e.req.local[0]),
    "{port}": lambda e: str(e.req.remote[1]),
    "{size}": lambda e: str(e.req.size),
    "{duration}": _duration,
    "{rcode}": _rcode,
    "{rsize}": _rsize,
    "{>rflags}": _rflags,
    "{>bufsize}": lambda e: str(e.req.max_size),
    "{>do}": lambda e: "true" if e.req.do else "false",
    "{>id}": lambda e: str(e.req.id),
    "{>opcode}": lambda e: str(int(e.req.msg.header.opcode)),
}
"""Every placeholder of spec §13 except `{/label}`, with the getter that fills it in."""


@dataclass(frozen=True, slots=True)
class LineFormat:
    """A compiled format: literal text as a %-template, one getter per `%s`."""

    template: str
    getters: tuple[Getter, ...]

    def render(self, entry: Entry) -> str:
        """The log line for one query."""
        return self.template % tuple(get(entry) for get in self.getters)


def compile_format(text: str) -> LineFormat:
    """Compile a format.

    A placeholder is the text from a `}` back to the nearest `{` before it, so `{a{name}` keeps
    `{a` as text and fills `{name}`. Known placeholders and `{/label}` become fields; anything else
    in braces is copied literally.
    """
    template: list[str] = []
    getters: list[Getter] = []
    literal = ""
    rest = text
    while (close := rest.find("}")) >= 0:
        opening = rest.rfind("{", 0, close)
        token = rest[opening : close + 1] if opening >= 0 else ""
        getter = FIELDS.get(token) or (_metadata if token.startswith("{/") else None)
        if getter is None:
            literal += rest[: close + 1]
        else:
            template.append((literal + rest[:opening]).replace("%", "%%") + "%s")
            getters.append(getter)
            literal = ""
        rest = rest[close + 1 :]
    template.append((literal + rest).replace("%", "%%"))
    return LineFormat("".join(template), tuple(getters))
