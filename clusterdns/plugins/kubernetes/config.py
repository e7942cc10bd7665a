"""KubernetesConfig and `parse`: the `kubernetes` directive's zones and options (spec §6.1).

Every problem is raised through `Directive.error()` so that it names the Corefile file and line.
This module opens nothing (no API connection, no file read) and knows nothing about serving; it
also holds the label-selector grammar so selectors are checked at setup time, not at first list.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from clusterdns.corefile import Directive
from clusterdns.dnsutil.duration import parse_duration
from clusterdns.dnsutil.fallthrough import NEVER, Fallthrough, parse_fallthrough
from clusterdns.dnsutil.names import is_reverse, normalize
from clusterdns.dnsutil.zones import KeyError_, zones_of

log = logging.getLogger("clusterdns.plugins.kubernetes")

DEFAULT_TTL_S: Final = 5
MAX_TTL_S: Final = 3600
DEFAULT_STARTUP_TIMEOUT_S: Final = 5.0


class PodMode(enum.Enum):
    """How `<dashed-ip>.<ns>.pod.<zone>` names are answered (spec §6.8)."""

    DISABLED = "disabled"
    INSECURE = "insecure"
    VERIFIED = "verified"


class SelectorError(ValueError):
    """A label selector that does not parse; the message says why."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector."""

    key: str
    operator: str
    """One of `=`, `!=`, `in`, `notin`, `exists`, `!exists` (`==` is stored as `=`)."""
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with `labels` satisfies this term."""
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return present
            case "!exists":
                return not present
            case "=" | "in":
                return present and value in self.values
            case _:  # "!=" | "notin"
                return not present or value not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed Kubernetes label selector; `text` is what is sent to the API server."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with `labels` is selected (every term must hold)."""
        return all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Client certificate, key and CA for `endpoint` (`tls CERT KEY CACERT`)."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesConfig:
    """The `kubernetes` line of one server block, validated."""

    zones: tuple[str, ...]
    """Zones served (lower-case, absolute, CIDRs expanded); default the server block's keys."""
    primary_zone: str
    """The first forward (non-reverse) zone; PTR targets are built in it."""
    endpoint: str | None = None
    """API server URL; None: in-cluster (or kubeconfig)."""
    tls: TLSFiles | None = None
    """Client TLS files for `endpoint`."""
    kubeconfig: str | None = None
    """Kubeconfig file to load credentials and address from."""
    kubeconfig_context: str | None = None
    """Context in the kubeconfig; None: its current context."""
    apiserver_qps: float | None = None
    """Client-side request rate limit, requests per second; None: client default."""
    apiserver_burst: int | None = None
    """Burst for the rate limiter; None: client default."""
    apiserver_max_inflight: int | None = None
    """Cap on concurrent API requests; None or 0: no cap."""
    namespaces: frozenset[str] = frozenset()
    """Only these namespaces exist for DNS (lower case); empty: all."""
    namespace_labels: LabelSelector | None = None
    """Only namespaces matching this selector are watched (and so exist)."""
    labels: LabelSelector | None = None
    """Only Services, EndpointSlices and Pods matching this selector are watched."""
    pods: PodMode = PodMode.DISABLED
    """Pod record mode; default disabled."""
    endpoint_pod_names: bool = False
    """Name endpoints without a hostname after their pod (targetRef) instead of their IP."""
    ttl_s: int = DEFAULT_TTL_S
    """TTL of every record except the dns-version TXT, seconds, 0..3600; default 5."""
    noendpoints: bool = False
    """Do not watch EndpointSlices; headless and endpoint names never resolve."""
    fallthrough: Fallthrough = NEVER
    """Zones in which a name error goes to the next plugin."""
    ignore_empty_service: bool = False
    """A ClusterIP service without ready endpoint addresses does not exist."""
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    """How long start-up waits for the initial sync, seconds; default 5."""
    from_yaml: tuple[str, ...] = ()
    """Files or folders of Kubernetes YAML to serve instead of the API server (extension)."""

    @property
    def watches_pods(self) -> bool:
        """Whether Pods must be watched (only `pods verified` needs them)."""
        return self.pods is PodMode.VERIFIED


def parse(lines: Sequence[Directive], block_zones: Sequence[str]) -> KubernetesConfig:
    """Parse the block's `kubernetes [ZONES...] { ... }` line.

    Raises:
        CorefileError: a second line, a bad zone, an unknown option or a bad value, naming its
            line.
    """
    d = lines[0]
    if len(lines) > 1:
        raise lines[1].error("this plugin can only be used once per Server Block")
    zones = _zones(d, block_zones)
    forward = [z for z in zones if not is_reverse(z)]
    if not forward:
        raise d.error("non-reverse zone name must be used")
    endpoint: str | None = None
    tls: TLSFiles | None = None
    kubeconfig: str | None = None
    context: str | None = None
    qps: float | None = None
    burst: int | None = None
    inflight: int | None = None
    namespaces: set[str] = set()
    namespace_labels: LabelSelector | None = None
    labels: LabelSelector | None = None
    pods = PodMode.DISABLED
    pod_names = False
    ttl_s = DEFAULT_TTL_S
    noendpoints = False
    fall = NEVER
    ignore_empty = False
    startup_s = DEFAULT_STARTUP_TIMEOUT_S
    from_yaml: list[str] = []
    yaml_line: Directive | None = None
    api_line: Directive | None = None
    for opt in d.options:
        opt.expect_no_block()
        match opt.name:
            case "endpoint":
                urls = opt.expect_args(1, -1)
                api_line = api_line or opt
                if endpoint is not None or len(urls) > 1:
                    log.warning(
                        "Multiple endpoints have been deprecated, only the first specified "
                        "endpoint '%s' is used",
                        endpoint or urls[0],
                    )
                if endpoint is None:
                    endpoint = _endpoint(opt, urls[0])
            case "tls":
                opt.expect_args(3)
                tls = TLSFiles(opt.path_arg(0), opt.path_arg(1), opt.path_arg(2))
                api_line = api_line or opt
            case "kubeconfig":
                args = opt.expect_args(1, 2)
                kubeconfig = opt.path_arg(0)
                context = args[1] if len(args) == 2 else None
                api_line = api_line or opt
            case "apiserver_qps":
                qps = _qps(opt)
            case "apiserver_burst":
                burst = _count(opt)
            case "apiserver_max_inflight":
                inflight = _count(opt)
            case "namespaces":
                namespaces.update(ns.lower() for ns in opt.expect_args(1, -1))
            case "namespace_labels":
                namespace_labels = _selector(opt)
            case "labels":
                labels = _selector(opt)
            case "pods":
                (mode,) = opt.expect_args(1)
                try:
                    pods = PodMode(mode)
                except ValueError:
                    raise opt.error(
                        f"wrong value for pods: {mode},  must be one of: disabled, verified, "
                        "insecure"
                    ) from None
            case "endpoint_pod_names":
                opt.expect_args(0)
                pod_names = True
            case "ttl":
                ttl_s = _ttl(opt)
            case "noendpoints":
                opt.expect_args(0)
                noendpoints = True
            case "fallthrough":
                try:
                    fall = parse_fallthrough(opt.values)
                except ValueError as exc:
                    raise opt.error(str(exc)) from exc
            case "ignore":
                (what,) = opt.expect_args(1)
                if what != "empty_service":
                    raise opt.error(f"unable to parse ignore value: '{what}'")
                ignore_empty = True
            case "startup_timeout":
                startup_s = _duration(opt)
            case "from_yaml":
                paths = opt.expect_args(1, -1)
                for index, path in enumerate(paths):
                    if not os.path.exists(opt.path_arg(index)):
                        raise opt.arg_error(index, f"from_yaml: no such file or directory: {path}")
                from_yaml.extend(paths)
                yaml_line = yaml_line or opt
            case "multicluster" | "zonal":
                raise opt.error(f"{opt.name} is not supported by clusterdns")
            case _:
                raise opt.error(f"unknown property '{opt.name}'")
    if namespaces and namespace_labels is not None:
        raise d.error("namespaces and namespace_labels cannot both be set")
    if yaml_line is not None and api_line is not None:
        raise yaml_line.error(f"from_yaml cannot be combined with {api_line.name}")
    return KubernetesConfig(
        zones=zones,
        primary_zone=forward[0],
        endpoint=endpoint,
        tls=tls,
        kubeconfig=kubeconfig,
        kubeconfig_context=context,
        apiserver_qps=qps,
        apiserver_burst=burst,
        apiserver_max_inflight=inflight,
        namespaces=frozenset(namespaces),
        namespace_labels=namespace_labels,
        labels=labels,
        pods=pods,
        endpoint_pod_names=pod_names,
        ttl_s=ttl_s,
        noendpoints=noendpoints,
        fallthrough=fall,
        ignore_empty_service=ignore_empty,
        startup_timeout_s=startup_s,
        from_yaml=tuple(from_yaml),
    )


def _zones(d: Directive, block_zones: Sequence[str]) -> tuple[str, ...]:
    zones: list[str] = []
    for index, text in enumerate(d.values):
        try:
            zones.extend(zones_of(text))
        except KeyError_ as exc:
            raise d.arg_error(index, str(exc)) from exc
    if not d.args:
        zones = [normalize(z) for z in block_zones]
    return tuple(dict.fromkeys(zones))


_URL: Final = re.compile(r"(?:(https?)://)?([^/\s]+)(/.*)?", re.IGNORECASE)


def _endpoint(opt: Directive, url: str) -> str:
    m = _URL.fullmatch(url)
    if m is None or ("://" in url and m.group(1) is None):
        raise opt.error(f"invalid endpoint URL '{url}': expected http(s)://HOST[:PORT]")
    return url


def _ttl(opt: Directive) -> int:
    (text,) = opt.expect_args(1)
    try:
        ttl = int(text, 10)
    except ValueError:
        raise opt.error(f"ttl must be an integer, got '{text}'") from None
    if not 0 <= ttl <= MAX_TTL_S:
        raise opt.error(f"ttl must be in range [0, {MAX_TTL_S}]")
    return ttl


def _qps(opt: Directive) -> float:
    (text,) = opt.expect_args(1)
    try:
        value = float(text)
    except ValueError:
        raise opt.error(f"apiserver_qps must be a number, got '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise opt.error(f"apiserver_qps must be a finite number >= 0, got '{text}'")
    return value


def _count(opt: Directive) -> int:
    (text,) = opt.expect_args(1)
    try:
        value = int(text, 10)
    except ValueError:
        raise opt.error(f"{opt.name} must be an integer, got '{text}'") from None
    if value < 0:
        raise opt.error(f"{opt.name} must be >= 0, got '{text}'")
    return value


def _duration(opt: Directive) -> float:
    (text,) = opt.expect_args(1)
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise opt.error(f"invalid duration for {opt.name} '{text}'") from None
    if seconds < 0:
        raise opt.error(f"invalid negative duration for {opt.name} '{text}'")
    return seconds


def _selector(opt: Directive) -> LabelSelector:
    text = " ".join(opt.expect_args(1, -1))
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise opt.error(f"unable to parse {opt.name} selector '{text}': {exc}") from exc


# -- label selectors (k8s.io/apimachinery labels grammar, as metav1.ParseToLabelSelector takes) ---

_NAME_PART: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_TOKEN: Final = re.compile(r"\s*(?:(!=|==|=|!|\(|\)|,|<|>)|([^\s!=(),<>]+))")


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise SelectorError(f"invalid label key {key!r}: prefix must be a DNS subdomain")
    if not name or len(name) > 63 or not _NAME_PART.fullmatch(name):
        raise SelectorError(
            f"invalid label key {key!r}: name must be 1 to 63 alphanumeric characters, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )


def _check_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME_PART.fullmatch(value)):
        raise SelectorError(
            f"invalid label value {value!r}: at most 63 alphanumeric characters, '-', '_' or "
            "'.', starting and ending with an alphanumeric character"
        )


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split a selector into (kind, text) pairs; kind is `op` or `id`."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the token pattern matches every non-space rest
            raise SelectorError(f"unexpected text at {text[pos:]!r}")
        out.append(("op", m.group(1)) if m.group(1) else ("id", m.group(2)))
        pos = m.end()
    return out


def parse_selector(text: str) -> LabelSelector:
    """Parse a label selector (`a=b,c!=d`, `env in (a, b)`, `tier notin (x)`, `!key`, `key`).

    Raises:
        SelectorError: the text is not a valid selector.
    """
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def peek() -> tuple[str, str] | None:
        return toks[i] if i < len(toks) else None

    while i < len(toks):
        kind, tok = toks[i]
        if kind == "op" and tok == "!":
            i += 1
            nxt = peek()
            if nxt is None or nxt[0] != "id":
                raise SelectorError("expected a label key after '!'")
            _check_key(nxt[1])
            reqs.append(Requirement(nxt[1], "!exists"))
            i += 1
        elif kind == "id":
            key = tok
            _check_key(key)
            i += 1
            nxt = peek()
            if nxt is None or nxt == ("op", ","):
                reqs.append(Requirement(key, "exists"))
            elif nxt[0] == "op" and nxt[1] in ("=", "==", "!="):
                op = "!=" if nxt[1] == "!=" else "="
                i += 1
                value_tok = peek()
                value = ""
                if value_tok is not None and value_tok[0] == "id":
                    value = value_tok[1]
                    i += 1
                _check_value(value)
                reqs.append(Requirement(key, op, (value,)))
            elif nxt[0] == "id" and nxt[1] in ("in", "notin"):
                op = nxt[1]
                i += 1
                if peek() != ("op", "("):
                    raise SelectorError(f"expected '(' after {op!r}")
                i += 1
                values: list[str] = []
                while True:
                    item = peek()
                    if item is None:
                        raise SelectorError("unterminated value set, expected ')'")
                    if item == ("op", ")"):
                        i += 1
                        break
                    if item[0] != "id":
                        raise SelectorError(f"unexpected {item[1]!r} in value set")
                    _check_value(item[1])
                    values.append(item[1])
                    i += 1
                    sep = peek()
                    if sep == ("op", ","):
                        i += 1
                        if peek() == ("op", ")"):
                            raise SelectorError("missing value after ','")
                    elif sep is None:
                        raise SelectorError("unterminated value set, expected ')'")
                    elif sep != ("op", ")"):
                        raise SelectorError("expected ',' or ')' in value set")
                if not values:
                    raise SelectorError(f"for {op!r}, the set of values can't be empty")
                reqs.append(Requirement(key, op, tuple(values)))
            elif nxt[0] == "op" and nxt[1] in ("<", ">"):
                raise SelectorError(f"operator {nxt[1]!r} isn't supported in label selectors")
            else:
                raise SelectorError(f"unexpected {nxt[1]!r} after key {key!r}")
        else:
            raise SelectorError(f"unexpected {tok!r}")
        sep = peek()
        if sep is None:
            break
        if sep != ("op", ","):
            raise SelectorError(f"expected ',' between requirements, got {sep[1]!r}")
        i += 1
        if peek() is None:
            raise SelectorError("missing requirement after ','")
    if not reqs:
        raise SelectorError("empty selector")
    return LabelSelector(text=text, requirements=tuple(reqs))
