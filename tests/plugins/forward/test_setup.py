"""forward setup: every TO form and option -> ForwardConfig, every error with its file:line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterdns.corefile import parse
from clusterdns.errors import CorefileError, CorefileErrors
from clusterdns.metrics import Metrics
from clusterdns.plugins.forward import Forward, ForwardConfig, shared_for
from clusterdns.plugins.forward.config import Policy, TLSFiles, Transport, UpstreamAddr
from clusterdns.plugins.forward.config import parse as parse_forward
from clusterdns.plugins.forward.transport import UpstreamQuery
from clusterdns.plugins.whoami import Whoami
from tests.dnstest import build_config, make_request

RESOLV = """\
# a comment
domain cluster.local
search svc.cluster.local cluster.local
nameserver 10.0.0.10
nameserver fe80::1%eth0   ; trailing comment
nameserver not-an-address
nameserver 10.0.0.10
options ndots:5
"""


def up(
    host: str, port: int = 53, transport: Transport = Transport.DNS, name: str = ""
) -> UpstreamAddr:
    return UpstreamAddr(host=host, port=port, transport=transport, server_name=name)


LOCAL = (up("127.0.0.1"),)


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    body: str
    """The lines inside `. { }`; `{resolv}` and `{empty}` name temporary files."""
    want: ForwardConfig | str

    def id(self) -> str:
        return self.body.replace("\n", "⏎")[:70]


def block(head: str, *options: str) -> str:
    return head + " {\n" + "".join(f"        {o}\n" for o in options) + "    }"


VALID = [
    SetupCase(body="forward . 127.0.0.1", want=ForwardConfig(upstreams=LOCAL)),
    SetupCase(body="forward . 127.0.0.1:53", want=ForwardConfig(upstreams=LOCAL)),
    SetupCase(body="forward . dns://127.0.0.1", want=ForwardConfig(upstreams=LOCAL)),
    SetupCase(
        body="forward . 127.0.0.1:8080 [::1]:5353 ::2 [2003::1]",
        want=ForwardConfig(
            upstreams=(up("127.0.0.1", 8080), up("::1", 5353), up("::2"), up("2003::1"))
        ),
    ),
    SetupCase(
        body="forward example.ORG 127.0.0.1",
        want=ForwardConfig(from_zone="example.org.", upstreams=LOCAL),
    ),
    SetupCase(
        body="forward 10.9.3.0/18 127.0.0.1",
        want=ForwardConfig(from_zone="0.9.10.in-addr.arpa.", upstreams=LOCAL),
    ),
    SetupCase(
        body="forward dns://example.org:53 127.0.0.1",
        want=ForwardConfig(from_zone="example.org.", upstreams=LOCAL),
    ),
    # Duplicates are removed, first kept; transport does not make an upstream different.
    SetupCase(
        body="forward . 127.0.0.1 127.0.0.1:53 dns://127.0.0.1 tls://127.0.0.1:53 127.0.0.2",
        want=ForwardConfig(upstreams=(up("127.0.0.1"), up("127.0.0.2"))),
    ),
    SetupCase(
        body="forward . tls://127.0.0.1 tls://[::1]:10853",
        want=ForwardConfig(
            upstreams=(up("127.0.0.1", 853, Transport.TLS), up("::1", 10853, Transport.TLS))
        ),
    ),
    SetupCase(
        body="forward . tls://9.9.9.9%dns.quad9.net:10853 tls://[2400:3200::1%dns.alidns.com]:853",
        want=ForwardConfig(
            upstreams=(
                up("9.9.9.9", 10853, Transport.TLS, "dns.quad9.net"),
                up("2400:3200::1", 853, Transport.TLS, "dns.alidns.com"),
            )
        ),
    ),
    SetupCase(
        body="forward . fe80::1%eth0",
        want=ForwardConfig(upstreams=(up("fe80::1"),)),
    ),
    # resolv.conf files: nameservers on port 53, zones dropped, non-IPs skipped, deduplicated.
    SetupCase(
        body="forward . {resolv} 127.0.0.1",
        want=ForwardConfig(upstreams=(up("10.0.0.10"), up("fe80::1"), up("127.0.0.1"))),
    ),
    SetupCase(body="forward . {empty} 127.0.0.1", want=ForwardConfig(upstreams=LOCAL)),
    SetupCase(
        body="forward . dns://{resolv}",
        want=ForwardConfig(upstreams=(up("10.0.0.10"), up("fe80::1"))),
    ),
    SetupCase(
        body=block(
            "forward . 127.0.0.1",
            "except Example.org 10.0.0.0/24",
            "force_tcp",
            "prefer_udp",
            "expire 20s",
            "max_age 1m",
            "max_idle_conns 5",
            "read_timeout 300ms",
            "max_fails 3",
            "max_connect_attempts 0",
            "policy round_robin",
            "health_check 1s no_rec domain Example.COM",
            "max_concurrent 1000",
            "next nxdomain SERVFAIL",
            "next_on_nodata",
            "failfast_all_unhealthy_upstreams",
            "failover ServFail REFUSED",
            "source_address ::ffff:127.0.0.1",
            "doh_method GET",
        ),
        want=ForwardConfig(
            upstreams=LOCAL,
            ignored=("example.org.", "0.0.10.in-addr.arpa."),
            force_tcp=True,
            prefer_udp=True,
            expire_s=20.0,
            max_age_s=60.0,
            max_idle_conns=5,
            read_timeout_s=0.3,
            max_fails=3,
            max_connect_attempts=0,
            policy=Policy.ROUND_ROBIN,
            health_check_s=1.0,
            health_check_rd=False,
            health_check_domain="example.com.",
            max_concurrent=1000,
            next_rcodes=(3, 2),
            next_on_nodata=True,
            failfast_all_unhealthy_upstreams=True,
            failover_rcodes=(2, 5),
            source_address="127.0.0.1",
            doh_method="GET",
        ),
    ),
    SetupCase(
        body=block(
            "forward . 127.0.0.1", "policy sequential", "health_check 0.5s domain example.org"
        ),
        want=ForwardConfig(
            upstreams=LOCAL, policy=Policy.SEQUENTIAL, health_check_domain="example.org."
        ),
    ),
    SetupCase(
        body=block("forward . tls://127.0.0.1", "tls", "tls_servername dns.example.org"),
        want=ForwardConfig(
            upstreams=(up("127.0.0.1", 853, Transport.TLS),),
            tls=TLSFiles(),
            tls_servername="dns.example.org",
        ),
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "max_age 0", "expire 0"),
        want=ForwardConfig(upstreams=LOCAL, expire_s=0.0),
    ),
]

INVALID = [
    SetupCase(body="forward", want="Corefile:2: forward: expected at least 2 arguments, got 0"),
    SetupCase(body="forward .", want="Corefile:2: forward: expected at least 2 arguments, got 1"),
    SetupCase(
        body="forward " + "x" * 64 + " 127.0.0.1",
        want="Corefile:2: forward: unable to normalize '"
        + "x" * 64
        + "': zone is not a valid domain name: "
        + "x" * 64,
    ),
    SetupCase(
        body="forward . " + " ".join(f"127.0.0.{i}" for i in range(1, 17)),
        want="Corefile:2: forward: more than 15 TOs configured: 16",
    ),
    SetupCase(
        body="forward . https://1.1.1.1",
        want="Corefile:2: forward: https:// upstreams (DNS over HTTPS) are not supported by "
        "clusterdns: https://1.1.1.1",
    ),
    SetupCase(
        body="forward . quic://1.1.1.1",
        want="Corefile:2: forward: 'quic' is not supported as a destination protocol in forward: "
        "quic://1.1.1.1",
    ),
    SetupCase(
        body="forward . a27.0.0.1",
        want='Corefile:2: forward: not an IP address or file: "a27.0.0.1" (hostname upstreams '
        "are not supported by clusterdns)",
    ),
    SetupCase(
        body="forward . /nonexistent/resolv.conf",
        want='Corefile:2: forward: not an IP address or file: "/nonexistent/resolv.conf"',
    ),
    SetupCase(
        body="forward . 127.0.0.1:99999",
        want="Corefile:2: forward: invalid port in upstream address '127.0.0.1:99999'",
    ),
    SetupCase(
        body="forward . [::1]:0",
        want="Corefile:2: forward: invalid port in upstream address '[::1]:0'",
    ),
    SetupCase(
        body="forward . tls://{resolv}",
        want="Corefile:2: forward: not an IP address: 'tls://{resolv}'",
    ),
    SetupCase(
        body="forward . {empty}", want="Corefile:2: forward: no valid upstream addresses found"
    ),
    SetupCase(
        body=block("forward . tls://127.0.0.1%dns.example.org", "tls_servername other.example.org"),
        want="Corefile:2: forward: both forward ('other.example.org') and proxy level "
        "('dns.example.org') TLS servernames are set for upstream proxy "
        "'tls://127.0.0.1%dns.example.org'",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "blaatl"),
        want="Corefile:3: forward: unknown property 'blaatl'",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "except"),
        want="Corefile:3: forward: except: expected at least 1 argument, got 0",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "force_tcp yes"),
        want="Corefile:3: forward: force_tcp: expected no arguments, got 1",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "max_fails -1"),
        want="Corefile:3: forward: max_fails can't be negative: -1",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "max_fails many"),
        want="Corefile:3: forward: invalid value for max_fails 'many': want an integer from 0 to "
        "4294967295",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "max_concurrent -5"),
        want="Corefile:3: forward: max_concurrent can't be negative: -5",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "max_idle_conns"),
        want="Corefile:3: forward: max_idle_conns: expected exactly 1 argument, got 0",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "expire 10"),
        want="Corefile:3: forward: invalid duration for expire '10'",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "expire -1s"),
        want="Corefile:3: forward: expire can't be negative: -1s",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "read_timeout 0s"),
        want="Corefile:3: forward: read_timeout must be positive: 0s",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "expire 30s", "max_age 10s"),
        want="Corefile:2: forward: max_age (10s) must not be less than expire (30s)",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "health_check -1s"),
        want="Corefile:3: forward: health_check can't be negative: -1s",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "health_check 0.5s domain"),
        want="Corefile:3: forward: health_check: domain needs an argument",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "health_check 0.5s often"),
        want="Corefile:3: forward: health_check: unknown option often",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "health_check 0.5s domain " + "a" * 64 + ".org"),
        want="Corefile:3: forward: health_check: invalid domain name " + "a" * 64 + ".org",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "policy fastest"),
        want="Corefile:3: forward: unknown policy 'fastest'",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "next NXDOMAIN BOGUS"),
        want="Corefile:3: forward: BOGUS is not a valid rcode",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "failover NOERROR"),
        want="Corefile:3: forward: NoError cannot be used in failover",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "source_address not-an-ip"),
        want="Corefile:3: forward: invalid IP address: not-an-ip",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "source_address"),
        want="Corefile:3: forward: source_address: expected exactly 1 argument, got 0",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "doh_method PUT"),
        want="Corefile:3: forward: doh_method must be either GET or POST",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "tls a b c d"),
        want="Corefile:3: forward: tls: expected 0 to 3 arguments, got 4",
    ),
    SetupCase(
        body=block("forward . tls://127.0.0.1", "tls /nonexistent/ca.pem"),
        want="Corefile:3: forward: error reading /nonexistent/ca.pem: No such file or directory",
    ),
    SetupCase(
        body=block("forward . tls://127.0.0.1", "tls {resolv}"),
        want="Corefile:2: forward: could not load TLS settings",
    ),
    SetupCase(
        body=block("forward . tls://127.0.0.1", "tls /etc/\x00ca.pem"),
        want="Corefile:3: forward: invalid file name '/etc/\\x00ca.pem': it holds a NUL byte",
    ),
    SetupCase(
        body=block("forward . tls://127.0.0.1", "tls {resolv} /etc/\x00key.pem"),
        want="Corefile:3: forward: invalid file name '/etc/\\x00key.pem': it holds a NUL byte",
    ),
    SetupCase(
        body=block("forward . 127.0.0.1", "resolver 127.0.0.1"),
        want="Corefile:3: forward: resolver is not supported by clusterdns: upstreams must be IP "
        "addresses or resolv.conf files, so there are no hostnames to resolve",
    ),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(RESOLV)
    empty = tmp_path / "empty.conf"
    empty.write_text("# no nameservers\nsearch example.org\n")
    return {"resolv": str(resolv), "empty": str(empty)}


def resolve(value: str, files: dict[str, str]) -> str:
    for key, path in files.items():
        value = value.replace("{" + key + "}", path)
    return value


def corefile(body: str, files: dict[str, str]) -> str:
    return ". {\n    " + resolve(body, files) + "\n}\n"


@pytest.mark.parametrize("case", VALID, ids=SetupCase.id)
def test_valid(case: SetupCase, files: dict[str, str]) -> None:
    config = build_config(corefile(case.body, files))
    head = config.blocks[0].head
    assert isinstance(head, Forward)
    assert head.config == case.want


@pytest.mark.parametrize("case", INVALID, ids=SetupCase.id)
def test_invalid(case: SetupCase, files: dict[str, str]) -> None:
    with pytest.raises(CorefileErrors) as info:
        build_config(corefile(case.body, files))
    assert isinstance(case.want, str)
    message = str(info.value)
    assert message.startswith(resolve(case.want, files)), message


@pytest.mark.parametrize("option", ["tls /etc/\x00ca.pem", "tls {resolv} {resolv} /\x00ca"])
def test_parse_reports_a_nul_byte_in_a_tls_file_itself(option: str, files: dict[str, str]) -> None:
    """Not only through chain.build's backstop: forward's own parse names the file and line."""
    text = corefile(block("forward . tls://127.0.0.1", option), files)
    (server,) = parse(text, "Corefile", {"forward"})
    with pytest.raises(CorefileError) as info:
        parse_forward(server.directives[0])
    assert str(info.value).startswith("Corefile:3: forward: invalid file name '"), info.value
    assert str(info.value).endswith("': it holds a NUL byte"), info.value


def test_connect_attempts_default_is_twice_the_upstreams() -> None:
    config = ForwardConfig(upstreams=(up("127.0.0.1"), up("127.0.0.2"), up("127.0.0.3")))
    assert config.connect_attempts == 6
    assert ForwardConfig(upstreams=LOCAL, max_connect_attempts=0).connect_attempts == 0


def test_lines_chain_in_written_order_and_register_upstreams() -> None:
    config = build_config(
        ". {\n    forward example.org 127.0.0.1\n    forward . 127.0.0.2\n    whoami\n}\n"
    )
    block = config.blocks[0]
    first = block.head
    assert isinstance(first, Forward)
    second = first.next
    assert isinstance(second, Forward)
    assert isinstance(second.next, Whoami)
    assert first.config.from_zone == "example.org."
    assert second.config.from_zone == "."
    assert block.settings.upstreams == [first, second]
    assert first.upstreams_for("www.example.org.") == ["127.0.0.1:53"]
    assert first.upstreams_for("example.net.") == []
    assert second.upstreams_for("www.example.org.") == ["127.0.0.2:53"]


def test_setup_opens_nothing_and_registers_hooks() -> None:
    config = build_config(". {\n    forward . 127.0.0.1 127.0.0.2\n}\n")
    # One start-up and one shutdown hook per line; nothing runs until the server starts them.
    assert len(config.process.startup) == 1
    assert len(config.process.shutdown) == 1
    head = config.blocks[0].head
    assert isinstance(head, Forward)
    assert all(not p.probing and p.pool.idle_count("tcp") == 0 for p in head.proxies)


def test_metrics_are_registered_once_per_process() -> None:
    # Two blocks and two lines share the families: registering twice would raise.
    config = build_config(
        "example.org {\n    forward . 127.0.0.1\n    forward . 127.0.0.2\n}\n"
        "example.net {\n    forward . 127.0.0.3\n}\n"
    )
    metrics = config.process.metrics
    text = metrics.exposition().decode()
    assert text.count("# TYPE coredns_forward_max_concurrent_rejects_total counter") == 1
    assert "coredns_forward_max_concurrent_rejects_total 0.0" in text
    assert "coredns_forward_healthcheck_broken_total 0.0" in text
    heads = [b.head for b in config.blocks]
    assert all(isinstance(h, Forward) and h.shared is shared_for(metrics) for h in heads)
    assert shared_for(Metrics()) is not shared_for(metrics)


def test_upstream_query_follows_bufsize() -> None:
    req = make_request("Example.COM.", "A", edns_size=4096, do=True)
    same = UpstreamQuery.from_request(req)
    assert same.with_id(req.id) == req.wire
    assert same.question.name == "example.com."
    assert req.edns is not None
    req.edns = req.edns.with_size(1232)
    lowered = UpstreamQuery.from_request(req)
    wire = lowered.with_id(7)
    assert wire[:2] == b"\x00\x07"
    from dnslib import DNSRecord

    msg = DNSRecord.parse(wire)
    opt = [rr for rr in msg.ar if rr.rtype == 41]
    assert len(opt) == 1 and opt[0].rclass == 1232 and opt[0].ttl & 0x8000
    assert str(msg.q.qname) == "Example.COM."
