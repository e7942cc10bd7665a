from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
from dnslib import DNSRecord

from clusterdns.chain.build import Config
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import parse as parse_corefile
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import CorefileErrors, PluginError
from clusterdns.metrics import DURATION_BUCKETS, Metrics
from clusterdns.plugins import prometheus as prometheus_mod
from clusterdns.plugins.prometheus import Exporter, Prometheus, PrometheusConfig, parse
from tests.dnstest import (
    RecordingWriter,
    build_config,
    http_get,
    make_request,
    running_server,
    serve,
    udp_exchange,
)

ADDR = "127.0.0.1:0"
LABELS = 'server="dns://:53",view="",zone="."'


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[None]:
    await config.process.http.start()
    try:
        yield
    finally:
        await config.process.http.stop()


async def scrape(config: Config, address: str = ADDR) -> list[str]:
    """GET /metrics over HTTP; return the sample lines (comments dropped)."""
    port = config.process.http.listeners[address].port
    assert port > 0
    reply = await http_get(port, "/metrics", host=address.rpartition(":")[0])
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return [line for line in reply.text.splitlines() if line and not line.startswith("#")]


def label(line: str, name: str) -> str:
    m = re.search(f'[{{,]{name}="([^"]*)"', line)
    assert m is not None, f"no label {name} in {line}"
    return m.group(1)


def series(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line.startswith((name + "{", name + " "))]


# --- setup -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    want: PrometheusConfig | None = None
    error: str = ""


SETUP_CASES = [
    SetupCase(corefile=".:53 {\n    prometheus\n}", want=PrometheusConfig()),
    SetupCase(corefile=".:53 {\n    prometheus :9153\n}", want=PrometheusConfig(address=":9153")),
    SetupCase(
        corefile=".:53 {\n    prometheus 0.0.0.0:9253 {\n        runtime_metrics\n    }\n}",
        want=PrometheusConfig(address="0.0.0.0:9253", runtime_metrics=True),
    ),
    SetupCase(corefile=".:53 {\n    prometheus {\n    }\n}", want=PrometheusConfig()),
    SetupCase(
        corefile=".:53 {\n    prometheus localhost\n}",
        error="Corefile:2: prometheus: address 'localhost' is not host:port",
    ),
    SetupCase(
        corefile=".:53 {\n    prometheus :9153 :9154\n}",
        error="Corefile:2: prometheus: expected 0 to 1 arguments, got 2",
    ),
    SetupCase(
        corefile=".:53 {\n    prometheus {\n        runtime_metrics yes\n    }\n}",
        error="Corefile:3: prometheus: runtime_metrics: expected no arguments, got 1",
    ),
    SetupCase(
        corefile=".:53 {\n    prometheus {\n        tls cert.pem key.pem\n    }\n}",
        error="Corefile:3: prometheus: tls is not supported by clusterdns",
    ),
    SetupCase(
        corefile=".:53 {\n    prometheus {\n        runtime_metrics\n        path /m\n    }\n}",
        error="Corefile:4: prometheus: unknown option 'path'",
    ),
    SetupCase(
        corefile=".:53 {\n    prometheus\n    prometheus :9154\n}",
        error="Corefile:3: prometheus: this plugin can only be used once per Server Block",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.corefile.replace("\n", " "))
def test_setup(case: SetupCase) -> None:
    if case.error:
        with pytest.raises(CorefileErrors) as info:
            build_config(case.corefile)
        assert str(info.value) == case.error
        return
    (block,) = parse_corefile(case.corefile, "Corefile", DIRECTIVES)
    assert parse(block.lines_of("prometheus")[0]) == case.want
    config = build_config(case.corefile)
    assert case.want is not None
    assert isinstance(config.process.http.listeners[case.want.address].routes["/metrics"], Exporter)
    assert config.blocks[0].plugins == ("prometheus",)
    assert isinstance(config.blocks[0].head, Prometheus)


def test_blocks_share_the_exporter_of_an_address() -> None:
    config = build_config(
        "a.example.org:53 {\n    prometheus\n    whoami\n}\n"
        "b.example.org:53 {\n    prometheus\n    whoami\n}\n"
        "c.example.org:53 {\n    prometheus :9153\n    whoami\n}\n"
    )
    assert set(config.process.http.listeners) == {"localhost:9153", ":9153"}
    default = config.process.http.listeners["localhost:9153"]
    assert list(default.routes) == ["/metrics"]
    assert [b.plugins for b in config.blocks] == [("prometheus", "whoami")] * 3


# --- counting queries --------------------------------------------------------------------------


async def test_query_counted_and_scraped() -> None:
    config = build_config(".:53 {\n    prometheus 127.0.0.1:0\n    whoami\n}")
    (block,) = config.blocks
    req = make_request("example.org.", "A")
    code, w = await serve(block, req)
    assert code == rc.NOERROR and w.written
    async with serving(config):
        lines = await scrape(config)
    assert series(lines, "coredns_dns_requests_total") == [
        'coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",view="",'
        'zone="."} 1.0'
    ]
    assert series(lines, "coredns_dns_responses_total") == [
        f'coredns_dns_responses_total{{plugin="whoami",rcode="NOERROR",{LABELS}}} 1.0'
    ]
    assert series(lines, "coredns_dns_do_requests_total") == []
    # Request size: a 29-byte query lands in the 100-byte bucket.
    assert len(req.wire) == 29
    assert f'coredns_dns_request_size_bytes_bucket{{le="0",proto="udp",{LABELS}}} 0.0' in lines
    assert f'coredns_dns_request_size_bytes_bucket{{le="100",proto="udp",{LABELS}}} 1.0' in lines
    assert f'coredns_dns_request_size_bytes_sum{{proto="udp",{LABELS}}} 29.0' in lines
    assert f'coredns_dns_request_size_bytes_count{{proto="udp",{LABELS}}} 1.0' in lines
    # Response size: what whoami handed the writer.
    assert w.rsize > 29
    assert f'coredns_dns_response_size_bytes_sum{{proto="udp",{LABELS}}} {float(w.rsize)}' in lines
    assert f'coredns_dns_response_size_bytes_count{{proto="udp",{LABELS}}} 1.0' in lines
    # Duration: every bucket of 0.00025 * 2^n, cumulative up to +Inf.
    duration = series(lines, "coredns_dns_request_duration_seconds_bucket")
    les = [label(line, "le") for line in duration]
    assert les == [*(f"{b:g}" if b < 1 else repr(b) for b in DURATION_BUCKETS), "+Inf"]
    assert duration[-1] == f'coredns_dns_request_duration_seconds_bucket{{le="+Inf",{LABELS}}} 1.0'
    assert f"coredns_dns_request_duration_seconds_count{{{LABELS}}} 1.0" in lines


async def test_labels_follow_the_request() -> None:
    config = build_config(".:53 {\n    prometheus 127.0.0.1:0\n    whoami\n}")
    (block,) = config.blocks
    metrics = config.process.metrics
    req = make_request(
        "example.org.", "NAPTR", proto="tcp", remote=("2001:db8::1", 5353), edns_size=1232, do=True
    )
    req.zone = "example.org."
    req.server = "dns://127.0.0.1:53"
    await serve(block, req)
    await serve(block, make_request("example.org.", "AAAA"))
    key = ("dns://127.0.0.1:53", "example.org.", "")
    assert metrics.requests.values == {
        (*key, "tcp", "2", "other"): 1,
        ("dns://:53", ".", "", "udp", "1", "AAAA"): 1,
    }
    assert metrics.do_requests.values == {key: 1}
    assert metrics.responses.get((*key, "NOERROR", "whoami")) == 1
    assert metrics.request_size.count((*key, "tcp")) == 1
    assert metrics.response_size.count((*key, "tcp")) == 1
    assert metrics.duration.count(key) == 1
    async with serving(config):
        lines = await scrape(config)
    assert (
        'coredns_dns_requests_total{family="2",proto="tcp",server="dns://127.0.0.1:53",'
        'type="other",view="",zone="example.org."} 1.0'
    ) in lines
    assert (
        'coredns_dns_do_requests_total{server="dns://127.0.0.1:53",view="",zone="example.org."} 1.0'
    ) in lines


async def test_no_next_plugin_counts_servfail() -> None:
    config = build_config(".:53 {\n    prometheus 127.0.0.1:0\n}")
    (block,) = config.blocks
    with pytest.raises(PluginError, match=r"^plugin/prometheus: no next plugin found$"):
        await serve(block, make_request("example.org.", "A"))
    async with serving(config):
        lines = await scrape(config)
    assert series(lines, "coredns_dns_responses_total") == [
        f'coredns_dns_responses_total{{plugin="",rcode="SERVFAIL",{LABELS}}} 1.0'
    ]
    assert f'coredns_dns_response_size_bytes_bucket{{le="0",proto="udp",{LABELS}}} 1.0' in lines
    assert f'coredns_dns_response_size_bytes_sum{{proto="udp",{LABELS}}} 0.0' in lines
    assert f"coredns_dns_request_duration_seconds_count{{{LABELS}}} 1.0" in lines


class Scripted:
    """A next plugin that optionally writes, then returns an rcode or raises a PluginError."""

    name: ClassVar[str] = "scripted"

    def __init__(self, *, write: int | None = None, ret: int = 0, raise_rcode: int | None = None):
        self.write, self.ret, self.raise_rcode = write, ret, raise_rcode

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        if self.write is not None:
            w.write(req.reply(rcode=self.write), self.name)
        if self.raise_rcode is not None:
            raise PluginError(self.name, "boom", rcode=self.raise_rcode)
        return self.ret


@pytest.mark.parametrize(
    ("nxt", "rcode", "plugin", "raises"),
    [
        (Scripted(raise_rcode=rc.REFUSED), "REFUSED", "", True),
        (Scripted(write=rc.NXDOMAIN, raise_rcode=rc.SERVFAIL), "NXDOMAIN", "scripted", True),
        (Scripted(ret=rc.SERVFAIL), "SERVFAIL", "", False),
        (Scripted(ret=23), "BADCOOKIE", "", False),
        (Scripted(ret=42), "RCODE42", "", False),
        (Scripted(write=rc.NOERROR, ret=rc.NOERROR), "NOERROR", "scripted", False),
    ],
)
async def test_reply_outcomes(nxt: Scripted, rcode: str, plugin: str, raises: bool) -> None:
    metrics = Metrics()
    handler = Prometheus(metrics, nxt)
    req = make_request("example.org.", "A")
    w = RecordingWriter(req)
    if raises:
        with pytest.raises(PluginError) as info:
            await handler.serve(req, w)
        assert info.value.plugin == "scripted"
    else:
        assert await handler.serve(req, w) == nxt.ret
    key = ("dns://:53", ".", "")
    assert metrics.responses.values == {(*key, rcode, plugin): 1}
    assert metrics.duration.count(key) == 1
    assert metrics.response_size.sums[(*key, "udp")] == (w.rsize if w.written else 0)
    assert metrics.requests.get((*key, "udp", "1", "A")) == 1


async def test_two_addresses_serve_the_same_metrics() -> None:
    config = build_config(
        "a.example.org:53 {\n    prometheus 127.0.0.1:0\n    whoami\n}\n"
        "b.example.org:53 {\n    prometheus 127.0.0.2:0\n    whoami\n}\n"
    )
    for block in config.blocks:
        req = make_request(f"x.{block.settings.zones[0]}", "A")
        req.zone = block.settings.zones[0]
        await serve(block, req)
    async with serving(config):
        first = series(await scrape(config, "127.0.0.1:0"), "coredns_dns_requests_total")
        second = series(await scrape(config, "127.0.0.2:0"), "coredns_dns_requests_total")
    assert first == second
    assert [label(line, "zone") for line in first] == [
        "a.example.org.",
        "b.example.org.",
    ]


async def test_scrape_includes_process_metrics_and_other_paths_404() -> None:
    config = build_config(".:53 {\n    prometheus 127.0.0.1:0\n    whoami\n}")
    async with serving(config):
        lines = await scrape(config)
        port = config.process.http.listeners[ADDR].port
        status = (await http_get(port, "/metric")).status
    assert status == 404
    assert series(lines, "process_start_time_seconds")
    assert series(lines, "coredns_build_info")


async def test_real_server_query_is_scraped() -> None:
    corefile = ".:0 {\n    prometheus 127.0.0.1:0\n    whoami\n}"
    async with running_server(corefile) as server:
        dns_port = server.port()
        reply = await udp_exchange(dns_port, DNSRecord.question("example.org.", "AAAA").pack())
        assert DNSRecord.parse(reply).header.rcode == rc.NOERROR
        lines = await scrape(server.config)
    labels = f'server="dns://:{dns_port}",view="",zone="."'
    assert series(lines, "coredns_dns_requests_total") == [
        f'coredns_dns_requests_total{{family="1",proto="udp",server="dns://:{dns_port}",'
        f'type="AAAA",view="",zone="."}} 1.0'
    ]
    assert series(lines, "coredns_dns_responses_total") == [
        f'coredns_dns_responses_total{{plugin="whoami",rcode="NOERROR",{labels}}} 1.0'
    ]
    assert f"coredns_dns_request_duration_seconds_count{{{labels}}} 1.0" in lines


# --- README ------------------------------------------------------------------------------------


def test_readme_examples() -> None:
    doc = prometheus_mod.__doc__
    assert doc is not None
    for section in (
        "# prometheus",
        "## Name",
        "## Description",
        "## Syntax",
        "## Examples",
        "## Metrics",
    ):
        assert f"\n{section}\n" in f"\n{doc}"
    corefiles = re.findall(r"^~~~ corefile\n(.*?)^~~~$", doc, re.M | re.S)
    assert len(corefiles) == 2
    for text in corefiles:
        config = build_config(text)
        assert all(b.plugins[0] == "prometheus" for b in config.blocks)
        assert all(
            isinstance(lst.routes["/metrics"], Exporter)
            for lst in config.process.http.listeners.values()
        )
