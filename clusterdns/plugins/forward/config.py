"""ForwardConfig and `parse`: one `forward` line, checked at setup (spec §7.1).

Every problem is raised through `Directive.error()` / `arg_error()` so it names the Corefile line.
resolv.conf-style TO files are read here, once, as CoreDNS does at setup; nothing else touches
the network or the file system, and nothing here knows about serving.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.corefile.directive import nul_message
from clusterdns.dnsutil import rcode as rc
from clusterdns.dnsutil.duration import format_duration, parse_duration
from clusterdns.dnsutil.names import normalize, valid_domain
from clusterdns.dnsutil.zones import KeyError_, zones_from_arg

log = logging.getLogger("clusterdns.plugins.forward")

NAME: Final = "forward"
MAX_TO: Final = 15
"""Most TO words one line may have (a resolv.conf file counts as one)."""
DNS_PORT: Final = 53
TLS_PORT: Final = 853
DEFAULT_EXPIRE_S: Final = 10.0
DEFAULT_READ_TIMEOUT_S: Final = 2.0
DEFAULT_HEALTH_CHECK_S: Final = 0.5
DEFAULT_MAX_FAILS: Final = 2
CONNECT_ATTEMPTS_PER_UPSTREAM: Final = 2
_UINT32_MAX: Final = (1 << 32) - 1
_INTEGER: Final = re.compile(r"[0-9]+")
_UNSUPPORTED_SCHEMES: Final = ("quic", "grpc", "https3", "unix")


class Transport(enum.Enum):
    """How an upstream is spoken to."""

    DNS = "dns"
    """Plain DNS: UDP or TCP as the client, `force_tcp` and `prefer_udp` decide."""
    TLS = "tls"
    """DNS over TLS (RFC 7858), always over TCP."""


class Policy(enum.Enum):
    """The order in which a query tries the upstreams."""

    RANDOM = "random"
    ROUND_ROBIN = "round_robin"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamAddr:
    """One upstream after parsing: an IP address, a port and a transport."""

    host: str
    """The IP address in canonical text form, without brackets or IPv6 zone."""
    port: int
    transport: Transport = Transport.DNS
    server_name: str = ""
    """TLS server name given per upstream (`tls://IP%NAME`); empty when not given."""

    @property
    def addr(self) -> str:
        """`host:port` (IPv6 in brackets): the `to` metrics label and the registry name."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family of the address."""
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFiles:
    """The files of a `tls [CERT KEY] [CA]` option; empty strings where not given."""

    cert: str = ""
    key: str = ""
    ca: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardConfig:
    """One `forward` line, validated."""

    from_zone: str = "."
    """The zone this line forwards (lower-case, absolute)."""
    upstreams: tuple[UpstreamAddr, ...] = ()
    """Upstreams in the order written, duplicates removed (first kept)."""
    ignored: tuple[str, ...] = ()
    """`except` zones: names at or below them go to the next plugin."""
    force_tcp: bool = False
    """Always use TCP upstream; wins over `prefer_udp`."""
    prefer_udp: bool = False
    """Use UDP upstream even for TCP clients; a TC reply is retried over TCP."""
    expire_s: float = DEFAULT_EXPIRE_S
    """Idle upstream connections are closed after this many seconds; default 10."""
    max_age_s: float = 0.0
    """Upstream connections older than this are closed, seconds; 0 (default) = no limit."""
    max_idle_conns: int = 0
    """Idle connections kept per upstream and protocol; 0 (default) = no explicit cap."""
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    """How long to wait for one upstream's reply, seconds; default 2."""
    max_fails: int = DEFAULT_MAX_FAILS
    """Down after more than this many consecutive failed health checks; 0 = never, no checks."""
    max_connect_attempts: int | None = None
    """Upstream attempts per query; None = 2 x the number of upstreams; 0 = no cap."""
    tls: TLSFiles | None = None
    """The `tls` option for `tls://` upstreams; None = system CAs, no client certificate."""
    tls_servername: str = ""
    """TLS server name for every `tls://` upstream; empty = the upstream's own name or IP."""
    doh_method: str = "POST"
    """Accepted for compatibility; DNS over HTTPS upstreams are not supported."""
    policy: Policy = Policy.RANDOM
    """Upstream order per query."""
    health_check_s: float = DEFAULT_HEALTH_CHECK_S
    """Seconds between health probes of an upstream that failed; default 0.5."""
    health_check_rd: bool = True
    """RD bit of the probe; `no_rec` clears it."""
    health_check_domain: str = "."
    """Name of the `NS` probe; default the root."""
    max_concurrent: int = 0
    """Queries in flight on this line before new ones are REFUSED; 0 (default) = no limit."""
    next_rcodes: tuple[int, ...] = ()
    """Upstream rcodes that hand the query to the next line (when it is a `forward`)."""
    next_on_nodata: bool = False
    """Also hand NODATA replies to the next `forward` line."""
    failfast_all_unhealthy_upstreams: bool = False
    """SERVFAIL when every upstream is down, instead of trying a random one."""
    failover_rcodes: tuple[int, ...] = ()
    """Upstream rcodes after which the next upstream is tried."""
    source_address: str = ""
    """Local address for upstream queries and probes; empty = chosen by the system."""

    @property
    def connect_attempts(self) -> int:
        """Upstream attempts allowed per query; 0 = no cap."""
        if self.max_connect_attempts is None:
            return CONNECT_ATTEMPTS_PER_UPSTREAM * len(self.upstreams)
        return self.max_connect_attempts


def parse(d: Directive) -> ForwardConfig:
    """Parse `forward FROM TO... { ... }`.

    Raises:
        CorefileError: a bad FROM, TO, option or value, naming its line.
    """
    args = d.expect_args(2, -1)
    try:
        zones = zones_from_arg(args[0])
    except KeyError_ as exc:
        raise d.arg_error(0, f"unable to normalize '{args[0]}': {exc}") from exc
    from_zone = zones[0]
    if len(zones) > 1:
        log.warning(
            "Unsupported CIDR notation: '%s' expands to multiple zones. Using only '%s'.",
            args[0],
            from_zone,
        )
    to_words = args[1:]
    if len(to_words) > MAX_TO:
        raise d.arg_error(MAX_TO + 1, f"more than {MAX_TO} TOs configured: {len(to_words)}")

    opts = _Options()
    for opt in d.options:
        opt.expect_no_block()
        _parse_option(opt, opts)
    if opts.max_age_s > 0 and opts.max_age_s < opts.expire_s:
        raise d.error(
            f"max_age ({format_duration(opts.max_age_s)}) must not be less than "
            f"expire ({format_duration(opts.expire_s)})"
        )

    upstreams: list[UpstreamAddr] = []
    seen: set[tuple[str, int]] = set()
    for index, word in enumerate(to_words, start=1):
        try:
            found = parse_to(word)
        except ValueError as exc:
            raise d.arg_error(index, str(exc)) from exc
        for up in found:
            if up.server_name and opts.tls_servername:
                raise d.arg_error(
                    index,
                    f"both forward ('{opts.tls_servername}') and proxy level "
                    f"('{up.server_name}') TLS servernames are set for upstream proxy '{word}'",
                )
            if (up.host, up.port) not in seen:
                seen.add((up.host, up.port))
                upstreams.append(up)
    if not upstreams:
        raise d.error("no valid upstream addresses found")

    return ForwardConfig(
        from_zone=from_zone,
        upstreams=tuple(upstreams),
        ignored=tuple(opts.ignored),
        force_tcp=opts.force_tcp,
        prefer_udp=opts.prefer_udp,
        expire_s=opts.expire_s,
        max_age_s=opts.max_age_s,
        max_idle_conns=opts.max_idle_conns,
        read_timeout_s=opts.read_timeout_s,
        max_fails=opts.max_fails,
        max_connect_attempts=opts.max_connect_attempts,
        tls=opts.tls,
        tls_servername=opts.tls_servername,
        doh_method=opts.doh_method,
        policy=opts.policy,
        health_check_s=opts.health_check_s,
        health_check_rd=opts.health_check_rd,
        health_check_domain=opts.health_check_domain,
        max_concurrent=opts.max_concurrent,
        next_rcodes=tuple(opts.next_rcodes),
        next_on_nodata=opts.next_on_nodata,
        failfast_all_unhealthy_upstreams=opts.failfast,
        failover_rcodes=tuple(opts.failover_rcodes),
        source_address=opts.source_address,
    )


class _Options:
    """The block's options while they are being read (frozen into ForwardConfig at the end)."""

    def __init__(self) -> None:
        self.ignored: list[str] = []
        self.force_tcp = False
        self.prefer_udp = False
        self.expire_s = DEFAULT_EXPIRE_S
        self.max_age_s = 0.0
        self.max_idle_conns = 0
        self.read_timeout_s = DEFAULT_READ_TIMEOUT_S
        self.max_fails = DEFAULT_MAX_FAILS
        self.max_connect_attempts: int | None = None
        self.tls: TLSFiles | None = None
        self.tls_servername = ""
        self.doh_method = "POST"
        self.policy = Policy.RANDOM
        self.health_check_s = DEFAULT_HEALTH_CHECK_S
        self.health_check_rd = True
        self.health_check_domain = "."
        self.max_concurrent = 0
        self.next_rcodes: list[int] = []
        self.next_on_nodata = False
        self.failfast = False
        self.failover_rcodes: list[int] = []
        self.source_address = ""


def _parse_option(opt: Directive, o: _Options) -> None:
    name = opt.name
    match name:
        case "except":
            words = opt.expect_args(1, -1)
            for index, word in enumerate(words):
                try:
                    o.ignored.extend(zones_from_arg(word))
                except KeyError_ as exc:
                    raise opt.arg_error(index, f"except: {exc}") from exc
        case "force_tcp":
            opt.expect_args(0)
            o.force_tcp = True
        case "prefer_udp":
            opt.expect_args(0)
            o.prefer_udp = True
        case "next_on_nodata":
            opt.expect_args(0)
            o.next_on_nodata = True
        case "failfast_all_unhealthy_upstreams":
            opt.expect_args(0)
            o.failfast = True
        case "expire":
            o.expire_s = _duration(opt, allow_zero=True)
        case "max_age":
            o.max_age_s = _duration(opt, allow_zero=True)
        case "read_timeout":
            o.read_timeout_s = _duration(opt, allow_zero=False)
        case "max_idle_conns":
            o.max_idle_conns = _integer(opt, high=_UINT32_MAX)
        case "max_fails":
            o.max_fails = _integer(opt, high=_UINT32_MAX)
        case "max_connect_attempts":
            o.max_connect_attempts = _integer(opt, high=_UINT32_MAX)
        case "max_concurrent":
            o.max_concurrent = _integer(opt, high=(1 << 63) - 1)
        case "health_check":
            _health_check(opt, o)
        case "tls":
            words = opt.expect_args(0, 3)
            _check_readable(opt, words)
            if len(words) == 1:
                o.tls = TLSFiles(ca=words[0])
            else:
                padded = [*words, "", "", ""]
                o.tls = TLSFiles(cert=padded[0], key=padded[1], ca=padded[2])
        case "tls_servername":
            (o.tls_servername,) = opt.expect_args(1)
        case "doh_method":
            (method,) = opt.expect_args(1)
            if method not in ("GET", "POST"):
                raise opt.error("doh_method must be either GET or POST")
            o.doh_method = method
        case "policy":
            (value,) = opt.expect_args(1)
            try:
                o.policy = Policy(value)
            except ValueError:
                raise opt.error(f"unknown policy '{value}'") from None
        case "next":
            o.next_rcodes = _rcodes(opt, failover=False)
        case "failover":
            o.failover_rcodes = _rcodes(opt, failover=True)
        case "source_address":
            (value,) = opt.expect_args(1)
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                raise opt.error(f"invalid IP address: {value}") from None
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            o.source_address = str(ip)
        case "resolver":
            opt.expect_args(1, -1)
            raise opt.error(
                "resolver is not supported by clusterdns: upstreams must be IP addresses or "
                "resolv.conf files, so there are no hostnames to resolve"
            )
        case _:
            raise opt.error(f"unknown property '{name}'")


def _duration(opt: Directive, *, allow_zero: bool) -> float:
    (value,) = opt.expect_args(1)
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise opt.error(f"invalid duration for {opt.name} '{value}'") from None
    if seconds < 0:
        raise opt.error(f"{opt.name} can't be negative: {value}")
    if seconds == 0 and not allow_zero:
        raise opt.error(f"{opt.name} must be positive: {value}")
    return seconds


def _integer(opt: Directive, *, high: int) -> int:
    (value,) = opt.expect_args(1)
    if value.startswith("-") and _INTEGER.fullmatch(value[1:]):
        raise opt.error(f"{opt.name} can't be negative: {value}")
    if _INTEGER.fullmatch(value) is None or int(value) > high:
        raise opt.error(f"invalid value for {opt.name} '{value}': want an integer from 0 to {high}")
    return int(value)


def _health_check(opt: Directive, o: _Options) -> None:
    words = opt.expect_args(1, -1)
    try:
        interval = parse_duration(words[0])
    except ValueError:
        raise opt.error(f"invalid duration for health_check '{words[0]}'") from None
    if interval < 0:
        raise opt.error(f"health_check can't be negative: {words[0]}")
    o.health_check_s = interval
    o.health_check_domain = "."
    i = 1
    while i < len(words):
        word = words[i]
        if word == "no_rec":
            o.health_check_rd = False
        elif word == "domain":
            if i + 1 >= len(words):
                raise opt.error("health_check: domain needs an argument")
            i += 1
            domain = normalize(words[i])
            if not valid_domain(domain):
                raise opt.arg_error(i, f"health_check: invalid domain name {words[i]}")
            o.health_check_domain = domain
        else:
            raise opt.arg_error(i, f"health_check: unknown option {word}")
        i += 1


def _rcodes(opt: Directive, *, failover: bool) -> list[int]:
    codes: list[int] = []
    for index, word in enumerate(opt.expect_args(1, -1)):
        code = rc.RCODES_BY_NAME.get(word.upper())
        if code is None:
            raise opt.arg_error(index, f"{word} is not a valid rcode")
        if failover and code == rc.NOERROR:
            raise opt.arg_error(index, "NoError cannot be used in failover")
        codes.append(code)
    return codes


def _check_readable(opt: Directive, paths: list[str]) -> None:
    """Open each file argument once, so a missing or unreadable file is an error at this line.

    Raises:
        CorefileError: a file that cannot be read, or a name holding a NUL byte (which makes
            `open` raise ValueError, not OSError), naming the argument.
    """
    for index, path in enumerate(paths):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise opt.arg_error(index, f"error reading {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:  # "embedded null byte"
            raise opt.arg_error(index, nul_message(path)) from exc


# -- TO words ------------------------------------------------------------------------------------


def parse_to(word: str) -> list[UpstreamAddr]:
    """Turn one TO word into upstreams: an address, or the nameservers of a resolv.conf file.

    A file without nameserver lines yields nothing (CoreDNS skips it silently).

    Raises:
        ValueError: an unsupported scheme, a bad address or port, a missing file, a hostname.
    """
    scheme, sep, rest = word.partition("://")
    if not sep:
        scheme, rest = "dns", word
    if scheme == "https":
        raise ValueError(
            f"https:// upstreams (DNS over HTTPS) are not supported by clusterdns: {word}"
        )
    if scheme in _UNSUPPORTED_SCHEMES:
        raise ValueError(
            f"'{scheme}' is not supported as a destination protocol in forward: {word}"
        )
    if scheme not in ("dns", "tls"):
        raise ValueError(f"invalid address: {word!r}")
    if not rest:
        raise ValueError(f"invalid address: {word!r}")
    transport = Transport.TLS if scheme == "tls" else Transport.DNS
    default_port = TLS_PORT if transport is Transport.TLS else DNS_PORT
    host_port, zone = _split_zone(rest)
    parsed = _split_host_port(host_port)
    if parsed is None:
        if zone or transport is Transport.TLS:
            raise ValueError(f"not an IP address: {word!r}")
        return read_resolv_conf(rest)
    host, port_text = parsed
    port = default_port
    if port_text is not None:
        if _INTEGER.fullmatch(port_text) is None or not 0 < int(port_text) <= 65535:
            raise ValueError(f"invalid port in upstream address {word!r}")
        port = int(port_text)
    return [
        UpstreamAddr(
            host=host,
            port=port,
            transport=transport,
            server_name=zone if transport is Transport.TLS else "",
        )
    ]


def _split_zone(text: str) -> tuple[str, str]:
    """Split `IP%zone[:port]` / `[IP%zone]:port` into (`IP[:port]`, zone)."""
    percent = text.rfind("%")
    if percent < 0:
        return text, ""
    host = text[:percent]
    zone = text[percent + 1 :]
    if host.startswith("["):
        host += "]"
    colon = zone.rfind(":")
    if colon >= 0:
        host += zone[colon:]
        zone = zone[:colon].removesuffix("]")
    return host, zone


def _split_host_port(text: str) -> tuple[str, str | None] | None:
    """(canonical IP, port text or None) for `IP`, `IP:PORT`, `[IPv6]`, `[IPv6]:PORT`; else None."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        inner, tail = text[1:end], text[end + 1 :]
        ip = _ip(inner)
        if ip is None or ":" not in ip:
            return None
        if not tail:
            return ip, None
        if not tail.startswith(":"):
            return None
        return ip, tail[1:]
    ip = _ip(text)
    if ip is not None:
        return ip, None
    host, colon, port = text.rpartition(":")
    if not colon or ":" in host:
        return None
    ip = _ip(host)
    if ip is None:
        return None
    return ip, port


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def read_resolv_conf(path: str) -> list[UpstreamAddr]:
    """The `nameserver` lines of a resolv.conf-style file, each on port 53 (zones dropped).

    Lines whose address is not an IP are skipped with a warning.

    Raises:
        ValueError: the word is neither an existing file nor an IP (hostnames are not supported).
    """
    if not os.path.exists(path):
        looks_like_host = "/" not in path and valid_domain(normalize(path))
        hint = " (hostname upstreams are not supported by clusterdns)" if looks_like_host else ""
        raise ValueError(f'not an IP address or file: "{path}"{hint}')
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f'failed to open file "{path}": {exc.strerror or exc}') from exc
    found: list[UpstreamAddr] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        address = fields[1].split("%", 1)[0]
        ip = _ip(address)
        if ip is None:
            log.warning("ignoring nameserver %r in %s: not an IP address", fields[1], path)
            continue
        found.append(UpstreamAddr(host=ip, port=DNS_PORT))
    return found
