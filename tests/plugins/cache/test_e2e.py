"""The cache in the real server on loopback, queried with dnspython and dig."""

from __future__ import annotations

import re

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode

from clusterdns.metrics import Metrics
from clusterdns.plugins.cache import Cache, metrics_for
from tests.dnstest import TIMEOUT_S, dig, running_server
from tests.plugins.cache.helpers import Answer, Backend, FakeClock, cache_config

COREFILE = """\
.:0 {
    cache 30
    template IN A example.org {
        answer "{{ .Name }} 3600 IN A 192.0.2.10"
    }
}
"""

KUBEADM_NEW = """\
.:0 {
    cache 30 {
        disable success cluster.local
        disable denial cluster.local
    }
    template IN A cluster.local {
        answer "{{ .Name }} 0 IN A 10.96.0.1"
    }
    template IN A example.org {
        answer "{{ .Name }} 3600 IN A 192.0.2.10"
    }
}
"""


async def ask(port: int, name: str, *, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await query(q, "127.0.0.1", port=port, timeout=TIMEOUT_S)


def answer_ttl(msg: dns.message.Message) -> int:
    assert msg.answer, f"no answer:\n{msg}"
    return int(msg.answer[0].ttl)


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_udp_and_tcp_share_the_cache_and_metrics_count_it() -> None:
    async with running_server(COREFILE) as server:
        port = server.port()
        first = await ask(port, "www.example.org.")
        assert first.rcode() == dns.rcode.NOERROR
        assert answer_ttl(first) == 30, "the template's 3600 is capped on the first reply"
        assert first.flags & dns.flags.AA and not first.flags & dns.flags.RA
        second = await ask(port, "WWW.example.ORG.", tcp=True)
        assert str(second.question[0].name) == "WWW.example.ORG."
        assert str(second.answer[0].name) == "www.example.org.", "stored letter case"
        assert 0 < answer_ttl(second) <= 30
        assert second.flags & dns.flags.AA
        metrics = server.config.process.metrics
        assert isinstance(metrics, Metrics)
        text = metrics.exposition().decode()
        label = f"dns://:{port}"
        assert metric(text, "coredns_cache_requests_total", server=label, zones=".") == 2
        assert metric(text, "coredns_cache_hits_total", server=label, type="success") == 1
        assert metric(text, "coredns_cache_misses_total", server=label) == 1
        assert metric(text, "coredns_cache_entries", server=label, type="success") == 1
        assert metric(text, "coredns_template_matches_total") == 1, "answered once by template"


async def test_new_kubeadm_form_over_the_wire() -> None:
    async with running_server(KUBEADM_NEW) as server:
        port = server.port()
        for _ in range(2):
            reply = await ask(port, "kubernetes.default.svc.cluster.local.")
            assert answer_ttl(reply) == 5, "ttl 0 leaves as 5 (quirk Q11)"
        for _ in range(2):
            assert answer_ttl(await ask(port, "www.example.org.")) <= 30
        metrics = server.config.process.metrics
        assert isinstance(metrics, Metrics)
        text = metrics.exposition().decode()
        assert metric(text, "coredns_template_matches_total", zone="cluster.local.") == 2
        assert metric(text, "coredns_template_matches_total", zone="example.org.") == 1


async def test_countdown_over_the_wire_with_an_injected_clock() -> None:
    clock = FakeClock()
    backend = Backend({"example.com.": Answer(answer=["example.com. 3600 IN A 93.184.215.14"])})
    cache = Cache(cache_config("cache 30"), backend, metrics=metrics_for(Metrics()), clock=clock)
    async with running_server(".:0 {\n    whoami\n}\n", head=cache) as server:
        port = server.port()
        assert answer_ttl(await ask(port, "example.com.")) == 30
        clock.advance(7)
        hit = await ask(port, "example.com.")
        assert answer_ttl(hit) == 23
        assert dns.flags.to_text(hit.flags).split() == ["QR", "AA", "RD", "RA"]
        clock.advance(24)
        assert answer_ttl(await ask(port, "example.com.", tcp=True)) == 30
        assert backend.count("example.com.") == 2


async def test_dig_sees_a_cache_hit() -> None:
    async with running_server(COREFILE) as server:
        port = server.port()
        await dig(port, "api.example.org", "A")
        out = await dig(port, "api.example.org", "A")
        assert "status: NOERROR" in out and "flags: qr aa rd;" in out
        match = re.search(r"api\.example\.org\.\s+(\d+)\s+IN\s+A\s+192\.0\.2\.10", out)
        assert match is not None and 0 < int(match.group(1)) <= 30
