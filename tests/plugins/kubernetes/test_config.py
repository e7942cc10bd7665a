"""config.py: every option of spec §6.1; valid values -> config fields, bad ones -> file:line."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clusterdns.dnsutil.fallthrough import Fallthrough
from clusterdns.errors import CorefileError
from clusterdns.plugins.kubernetes.config import (
    KubernetesConfig,
    LabelSelector,
    PodMode,
    Requirement,
    SelectorError,
    TLSFiles,
    parse_selector,
)
from tests.plugins.kubernetes.cluster import FIXTURES, kubernetes_config

REFERENCE_ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")


def corefile(line: str, *options: str, keys: str = ".:53") -> str:
    """A Corefile whose kubernetes line is line 2 and whose options are lines 3, 4, ..."""
    if not options:
        return f"{keys} {{\n    {line}\n}}\n"
    body = "".join(f"        {o}\n" for o in options)
    return f"{keys} {{\n    {line} {{\n{body}    }}\n}}\n"


@dataclass(frozen=True, kw_only=True)
class Valid:
    line: str = "kubernetes cluster.local in-addr.arpa ip6.arpa"
    options: tuple[str, ...] = ()
    keys: str = ".:53"
    want: dict[str, object] = field(default_factory=dict)
    """Fields that differ from the defaults of the reference zones."""


VALID = [
    Valid(want={}),
    Valid(
        line="kubernetes",
        keys="cluster.local:53",
        want={"zones": ("cluster.local.",), "primary_zone": "cluster.local."},
    ),
    Valid(
        line="kubernetes",
        keys="Cluster.Local 10.0.0.0/24",
        want={
            "zones": ("cluster.local.", "0.0.10.in-addr.arpa."),
            "primary_zone": "cluster.local.",
        },
    ),
    Valid(
        line="kubernetes in-addr.arpa Cluster.Local. other.local",
        want={
            "zones": ("in-addr.arpa.", "cluster.local.", "other.local."),
            "primary_zone": "cluster.local.",
        },
    ),
    Valid(
        line="kubernetes cluster.local 10.96.0.0/23",
        want={
            "zones": ("cluster.local.", "0.96.10.in-addr.arpa.", "1.96.10.in-addr.arpa."),
            "primary_zone": "cluster.local.",
        },
    ),
    Valid(options=("endpoint http://127.0.0.1:8001",), want={"endpoint": "http://127.0.0.1:8001"}),
    Valid(
        options=("endpoint https://10.0.0.1:6443 https://10.0.0.2:6443",),
        want={"endpoint": "https://10.0.0.1:6443"},
    ),
    Valid(
        options=("endpoint https://a:6443", "endpoint https://b:6443"),
        want={"endpoint": "https://a:6443"},
    ),
    Valid(
        options=("endpoint https://k8s:6443", "tls cert.pem key.pem ca.pem"),
        want={"endpoint": "https://k8s:6443", "tls": TLSFiles("cert.pem", "key.pem", "ca.pem")},
    ),
    Valid(options=("kubeconfig /etc/kube.conf",), want={"kubeconfig": "/etc/kube.conf"}),
    Valid(
        options=("kubeconfig /etc/kube.conf prod-ctx",),
        want={"kubeconfig": "/etc/kube.conf", "kubeconfig_context": "prod-ctx"},
    ),
    Valid(
        options=("apiserver_qps 12.5", "apiserver_burst 20", "apiserver_max_inflight 0"),
        want={"apiserver_qps": 12.5, "apiserver_burst": 20, "apiserver_max_inflight": 0},
    ),
    Valid(
        options=("namespaces prod Default", "namespaces kube-system"),
        want={"namespaces": frozenset({"prod", "default", "kube-system"})},
    ),
    Valid(
        options=("namespace_labels env in (prod, staging)",),
        want={
            "namespace_labels": LabelSelector(
                "env in (prod, staging)", (Requirement("env", "in", ("prod", "staging")),)
            )
        },
    ),
    Valid(
        options=("labels app=web,tier!=cache",),
        want={
            "labels": LabelSelector(
                "app=web,tier!=cache",
                (Requirement("app", "=", ("web",)), Requirement("tier", "!=", ("cache",))),
            )
        },
    ),
    Valid(options=("pods insecure",), want={"pods": PodMode.INSECURE}),
    Valid(options=("pods verified",), want={"pods": PodMode.VERIFIED}),
    Valid(options=("pods disabled",), want={"pods": PodMode.DISABLED}),
    Valid(options=("endpoint_pod_names",), want={"endpoint_pod_names": True}),
    Valid(options=("ttl 0",), want={"ttl_s": 0}),
    Valid(options=("ttl 3600",), want={"ttl_s": 3600}),
    Valid(options=("noendpoints",), want={"noendpoints": True}),
    Valid(options=("fallthrough",), want={"fallthrough": Fallthrough((".",))}),
    Valid(
        options=("fallthrough in-addr.arpa ip6.arpa",),
        want={"fallthrough": Fallthrough(("in-addr.arpa.", "ip6.arpa."))},
    ),
    Valid(options=("ignore empty_service",), want={"ignore_empty_service": True}),
    Valid(options=("startup_timeout 1m30s",), want={"startup_timeout_s": 90.0}),
    Valid(options=("startup_timeout 500ms",), want={"startup_timeout_s": 0.5}),
    Valid(
        options=(f"from_yaml {FIXTURES / 'reference.yaml'} {FIXTURES}",),
        want={"from_yaml": (str(FIXTURES / "reference.yaml"), str(FIXTURES))},
    ),
]


def valid_id(v: Valid) -> str:
    return " / ".join([f"{v.keys}: {v.line}", *v.options])


@pytest.mark.parametrize("case", VALID, ids=valid_id)
def test_valid(case: Valid) -> None:
    got = kubernetes_config(corefile(case.line, *case.options, keys=case.keys))
    fields: dict[str, object] = {"zones": REFERENCE_ZONES, "primary_zone": "cluster.local."}
    fields.update(case.want)
    assert got == KubernetesConfig(**fields)  # type: ignore[arg-type]


def test_defaults() -> None:
    got = kubernetes_config(corefile("kubernetes cluster.local"))
    assert got.ttl_s == 5
    assert got.pods is PodMode.DISABLED
    assert got.startup_timeout_s == 5.0
    assert not got.fallthrough.enabled
    assert got.endpoint is None and got.kubeconfig is None and got.tls is None
    assert not got.watches_pods
    assert kubernetes_config(corefile("kubernetes", "pods verified")).watches_pods


def test_multiple_endpoints_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        kubernetes_config(corefile("kubernetes", "endpoint https://a:6443 https://b:6443"))
    assert "only the first specified endpoint 'https://a:6443' is used" in caplog.text


INVALID: list[tuple[tuple[str, ...], str]] = [
    (
        ("kubernetes in-addr.arpa ip6.arpa",),
        "Corefile:2: kubernetes: non-reverse zone name must be used",
    ),
    (("kubernetes 10.0.0.0/8",), "Corefile:2: kubernetes: non-reverse zone name must be used"),
    (("kubernetes", "foo"), "Corefile:3: kubernetes: unknown property 'foo'"),
    (("kubernetes", "ttl 30", "bogus 1 2"), "Corefile:4: kubernetes: unknown property 'bogus'"),
    (
        ("kubernetes", "pods secure"),
        "Corefile:3: kubernetes: wrong value for pods: secure,  must be one of: disabled, "
        "verified, insecure",
    ),
    (
        ("kubernetes", "ttl 30", "pods"),
        "Corefile:4: kubernetes: pods: expected exactly 1 argument, got 0",
    ),
    (
        ("kubernetes", "pods insecure verified"),
        "Corefile:3: kubernetes: pods: expected exactly 1 argument, got 2",
    ),
    (("kubernetes", "ttl 3601"), "Corefile:3: kubernetes: ttl must be in range [0, 3600]"),
    (("kubernetes", "ttl -1"), "Corefile:3: kubernetes: ttl must be in range [0, 3600]"),
    (("kubernetes", "ttl 5s"), "Corefile:3: kubernetes: ttl must be an integer, got '5s'"),
    (("kubernetes", "ttl"), "Corefile:3: kubernetes: ttl: expected exactly 1 argument, got 0"),
    (
        ("kubernetes", "namespaces"),
        "Corefile:3: kubernetes: namespaces: expected at least 1 argument, got 0",
    ),
    (
        ("kubernetes", "namespaces prod", "namespace_labels env=prod"),
        "Corefile:2: kubernetes: namespaces and namespace_labels cannot both be set",
    ),
    (
        ("kubernetes", "namespace_labels env in (prod"),
        "Corefile:3: kubernetes: unable to parse namespace_labels selector 'env in (prod': "
        "unterminated value set, expected ')'",
    ),
    (
        ("kubernetes", "labels"),
        "Corefile:3: kubernetes: labels: expected at least 1 argument, got 0",
    ),
    (
        ("kubernetes", "labels a=b,"),
        "Corefile:3: kubernetes: unable to parse labels selector 'a=b,': "
        "missing requirement after ','",
    ),
    (
        ("kubernetes", "labels a>1"),
        "Corefile:3: kubernetes: unable to parse labels selector 'a>1': "
        "operator '>' isn't supported in label selectors",
    ),
    (("kubernetes", "tls a b"), "Corefile:3: kubernetes: tls: expected exactly 3 arguments, got 2"),
    (
        ("kubernetes", "kubeconfig"),
        "Corefile:3: kubernetes: kubeconfig: expected 1 to 2 arguments, got 0",
    ),
    (
        ("kubernetes", "kubeconfig a b c"),
        "Corefile:3: kubernetes: kubeconfig: expected 1 to 2 arguments, got 3",
    ),
    (
        ("kubernetes", "endpoint"),
        "Corefile:3: kubernetes: endpoint: expected at least 1 argument, got 0",
    ),
    (
        ("kubernetes", "endpoint ftp://k8s"),
        "Corefile:3: kubernetes: invalid endpoint URL 'ftp://k8s': expected http(s)://HOST[:PORT]",
    ),
    (
        ("kubernetes", "apiserver_qps fast"),
        "Corefile:3: kubernetes: apiserver_qps must be a number, got 'fast'",
    ),
    (
        ("kubernetes", "apiserver_qps -1"),
        "Corefile:3: kubernetes: apiserver_qps must be a finite number >= 0, got '-1'",
    ),
    (
        ("kubernetes", "apiserver_qps nan"),
        "Corefile:3: kubernetes: apiserver_qps must be a finite number >= 0, got 'nan'",
    ),
    (
        ("kubernetes", "apiserver_burst 1.5"),
        "Corefile:3: kubernetes: apiserver_burst must be an integer, got '1.5'",
    ),
    (
        ("kubernetes", "apiserver_max_inflight -3"),
        "Corefile:3: kubernetes: apiserver_max_inflight must be >= 0, got '-3'",
    ),
    (
        ("kubernetes", "endpoint_pod_names yes"),
        "Corefile:3: kubernetes: endpoint_pod_names: expected no arguments, got 1",
    ),
    (
        ("kubernetes", "noendpoints please"),
        "Corefile:3: kubernetes: noendpoints: expected no arguments, got 1",
    ),
    (
        ("kubernetes", "ignore empty_services"),
        "Corefile:3: kubernetes: unable to parse ignore value: 'empty_services'",
    ),
    (
        ("kubernetes", "ignore"),
        "Corefile:3: kubernetes: ignore: expected exactly 1 argument, got 0",
    ),
    (
        ("kubernetes", "startup_timeout 5"),
        "Corefile:3: kubernetes: invalid duration for startup_timeout '5'",
    ),
    (
        ("kubernetes", "startup_timeout -1s"),
        "Corefile:3: kubernetes: invalid negative duration for startup_timeout '-1s'",
    ),
    (
        ("kubernetes", "fallthrough exa..mple"),
        "Corefile:3: kubernetes: zone is not a valid domain name: exa..mple",
    ),
    (
        ("kubernetes", "multicluster clusterset.local"),
        "Corefile:3: kubernetes: multicluster is not supported by clusterdns",
    ),
    (("kubernetes", "zonal"), "Corefile:3: kubernetes: zonal is not supported by clusterdns"),
    (
        ("kubernetes", "from_yaml"),
        "Corefile:3: kubernetes: from_yaml: expected at least 1 argument, got 0",
    ),
    (
        ("kubernetes", "from_yaml /nonexistent/cluster.yaml"),
        "Corefile:3: kubernetes: from_yaml: no such file or directory: /nonexistent/cluster.yaml",
    ),
    (
        ("kubernetes", f"from_yaml {FIXTURES}", "endpoint http://127.0.0.1:8001"),
        "Corefile:3: kubernetes: from_yaml cannot be combined with endpoint",
    ),
]


@pytest.mark.parametrize(("lines", "message"), INVALID, ids=[" / ".join(c[0]) for c in INVALID])
def test_invalid(lines: tuple[str, ...], message: str) -> None:
    with pytest.raises(CorefileError) as err:
        kubernetes_config(corefile(lines[0], *lines[1:]))
    assert str(err.value).startswith(message)


def test_option_block_is_rejected() -> None:
    text = ".:53 {\n    kubernetes {\n        pods insecure {\n            x\n        }\n    }\n}\n"
    with pytest.raises(CorefileError, match=r"^Corefile:3: kubernetes: pods takes no block"):
        kubernetes_config(text)


def test_second_kubernetes_line_is_rejected() -> None:
    text = ".:53 {\n    kubernetes cluster.local\n    kubernetes other.local\n}\n"
    with pytest.raises(
        CorefileError, match=r"^Corefile:3: kubernetes: this plugin can only be used once"
    ):
        kubernetes_config(text)


def test_bad_zone_names_the_line() -> None:
    with pytest.raises(CorefileError) as err:
        kubernetes_config(corefile("kubernetes cluster..local"))
    assert (
        str(err.value) == "Corefile:2: kubernetes: zone is not a valid domain name: cluster..local"
    )


SELECTORS: list[tuple[str, tuple[Requirement, ...]]] = [
    ("a=b", (Requirement("a", "=", ("b",)),)),
    ("a==b", (Requirement("a", "=", ("b",)),)),
    ("a = b , c != d", (Requirement("a", "=", ("b",)), Requirement("c", "!=", ("d",)))),
    ("a=", (Requirement("a", "=", ("",)),)),
    ("env in (staging, qa)", (Requirement("env", "in", ("staging", "qa")),)),
    ("env notin (a)", (Requirement("env", "notin", ("a",)),)),
    ("!key", (Requirement("key", "!exists"),)),
    ("key", (Requirement("key", "exists"),)),
    (
        "example.com/team=dns,!k8s.io/legacy",
        (Requirement("example.com/team", "=", ("dns",)), Requirement("k8s.io/legacy", "!exists")),
    ),
    ("in in (in)", (Requirement("in", "in", ("in",)),)),
]


@pytest.mark.parametrize(("text", "want"), SELECTORS, ids=[t for t, _ in SELECTORS])
def test_selector_parses(text: str, want: tuple[Requirement, ...]) -> None:
    assert parse_selector(text) == LabelSelector(text, want)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        ",",
        "a=b,,c=d",
        "=b",
        "!",
        "!a=b",
        "a in ()",
        "a in (b,)",
        "a in b",
        "a notin (b c)",
        "a b",
        "-a=b",
        "a=-b",
        "a/b/c=d",
        "Bad_Prefix/a=b",
        "a=" + "x" * 64,
        "x" * 64,
        "a<3",
        "a in (b",
        "a=b)",
        "(a=b)",
    ],
)
def test_selector_rejects(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


MATCHES: list[tuple[str, dict[str, str], bool]] = [
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", {}, False),
    ("a!=b", {}, True),
    ("a!=b", {"a": "b"}, False),
    ("env in (x, y)", {"env": "y"}, True),
    ("env in (x, y)", {"env": "z"}, False),
    ("env notin (x)", {}, True),
    ("env notin (x)", {"env": "x"}, False),
    ("k", {"k": ""}, True),
    ("!k", {"k": ""}, False),
    ("!k", {"j": "1"}, True),
    ("a=b,!c", {"a": "b"}, True),
    ("a=b,!c", {"a": "b", "c": "1"}, False),
]


@pytest.mark.parametrize(
    ("text", "labels", "want"), MATCHES, ids=[f"{t} {lbls}" for t, lbls, _ in MATCHES]
)
def test_selector_matches(text: str, labels: dict[str, str], want: bool) -> None:
    assert parse_selector(text).matches(labels) is want


def test_from_yaml_relative_path_is_kept_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cluster").mkdir()
    monkeypatch.chdir(tmp_path)
    got = kubernetes_config(corefile("kubernetes cluster.local", "from_yaml cluster"))
    assert got.from_yaml == ("cluster",)
