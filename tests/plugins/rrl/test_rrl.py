"""rrl: setup (coredns/rrl's options), accounting on an injected clock, slip, bounds, metrics."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import ClassVar

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest
from dnslib import RR, SOA, A, DNSRecord

from clusterdns.chain.handler import Handler
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import CorefileErrors
from clusterdns.metrics import Metrics
from clusterdns.plugins import SETUP
from clusterdns.plugins.rrl import NAME, SPEC, Rrl, RrlConfig, Table
from clusterdns.plugins.rrl.handler import metrics_for
from tests.dnstest import TIMEOUT_S, RecordingWriter, build_config, make_request, running_server

SECOND = 1_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 10 * SECOND

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


# -- setup -----------------------------------------------------------------------------------


def corefile(body: str, keys: str = "example.org") -> str:
    return f"{keys} {{\n{body}\n    whoami\n}}\n"


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    name: str
    body: str
    want: RrlConfig | None = None
    error: str = ""


DEFAULT = RrlConfig(zones=("example.org.",))

SETUP_CASES = [
    SetupCase(name="off by default", body="    rrl", want=DEFAULT),
    SetupCase(
        name="responses-per-second is the default of the other allowances",
        body="    rrl {\n        responses-per-second 10\n        errors-per-second 2.5\n    }",
        want=replace(
            DEFAULT,
            responses_ns=SECOND // 10,
            nodata_ns=SECOND // 10,
            nxdomains_ns=SECOND // 10,
            referrals_ns=SECOND // 10,
            errors_ns=int(SECOND / 2.5),
        ),
    ),
    SetupCase(
        name="every option",
        body="""    rrl a.example.org {
        window 5
        ipv4-prefix-length 32
        ipv6-prefix-length 64
        nodata-per-second 0
        slip-ratio 2
        requests-per-second 100
        max-table-size 10
        report-only
        exempt-clients 10.0.0.0/8 ::1
    }""",
        want=replace(
            DEFAULT,
            zones=("a.example.org.",),
            window_ns=5 * SECOND,
            ipv4_prefix=32,
            ipv6_prefix=64,
            slip_ratio=2,
            requests_ns=SECOND // 100,
            max_table_size=10,
            report_only=True,
            exempt=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")),
        ),
    ),
    SetupCase(
        name="window must be positive",
        body="    rrl {\n        window 0\n    }",
        error="Corefile:3: rrl: window must be greater than zero",
    ),
    SetupCase(
        name="negative allowance",
        body="    rrl {\n        responses-per-second -1\n    }",
        error="Corefile:3: rrl: responses-per-second cannot be negative",
    ),
    SetupCase(
        name="prefix out of range",
        body="    rrl {\n        ipv4-prefix-length 33\n    }",
        error="Corefile:3: rrl: ipv4-prefix-length '33' must be between 1 and 32",
    ),
    SetupCase(
        name="slip out of range",
        body="    rrl {\n        slip-ratio 11\n    }",
        error="Corefile:3: rrl: slip-ratio '11' must be between 0 and 10",
    ),
    SetupCase(
        name="not a number",
        body="    rrl {\n        max-table-size lots\n    }",
        error="Corefile:3: rrl: max-table-size 'lots' invalid value",
    ),
    SetupCase(
        name="unknown option",
        body="    rrl {\n        responses 5\n    }",
        error="Corefile:3: rrl: unknown property 'responses'",
    ),
    SetupCase(
        name="option arguments counted",
        body="    rrl {\n        report-only yes\n    }",
        error="Corefile:3: rrl: report-only: expected no arguments, got 1",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.name)
def test_setup(case: SetupCase) -> None:
    if case.want is None:
        with pytest.raises(CorefileErrors) as exc:
            build_config(corefile(case.body))
        assert str(exc.value) == case.error
        return
    block = build_config(corefile(case.body)).blocks[0]
    assert isinstance(block.head, Rrl)
    assert block.head.config == case.want


def test_registered_off_by_default_and_never_replayed() -> None:
    assert SETUP[NAME] is SPEC and not SPEC.replay_safe
    assert not build_config(corefile("    rrl")).blocks[0].fastpath
    assert not DEFAULT.limits_responses and DEFAULT.requests_ns == 0


# -- accounting ------------------------------------------------------------------------------


def test_a_burst_of_one_second_then_the_rate() -> None:
    clock = FakeClock()
    table = Table(window_ns=15 * SECOND, slip_ratio=0, max_size=100, clock=clock)
    tenth = SECOND // 10
    assert [table.debit("t", tenth).limited for _ in range(11)] == [False] * 10 + [True]
    # Debt keeps growing while the flood lasts, down to the window.
    for _ in range(1000):
        table.debit("t", tenth)
    assert table.debit("t", tenth).balance_ns == -15 * SECOND
    clock.advance(15)
    assert table.debit("t", tenth).limited  # just paid back, and this one costs
    clock.advance(0.2)
    assert not table.debit("t", tenth).limited
    assert table.debit("other", tenth).balance_ns == 0  # accounts are independent


def test_slip_ratio_lets_every_nth_limited_response_through() -> None:
    clock = FakeClock()
    table = Table(window_ns=15 * SECOND, slip_ratio=3, max_size=100, clock=clock)
    debits = [table.debit("t", SECOND) for _ in range(31)]
    limited = [d for d in debits if d.limited]
    assert len(limited) == 30
    assert sum(d.slip for d in limited) == 10


def test_table_is_bounded_and_recycles_the_least_recently_used() -> None:
    clock = FakeClock()
    table = Table(window_ns=SECOND, slip_ratio=0, max_size=3, clock=clock)
    for token in ("a", "b", "c"):
        table.debit(token, SECOND)
    table.debit("a", SECOND)  # "a" is now the most recently used
    table.debit("d", SECOND)
    assert list(table.accounts) == ["c", "a", "d"] and table.recycled == 1
    for n in range(1000):
        table.debit(n, SECOND)
    assert len(table) == 3 and table.recycled == 1001
    assert not Table(window_ns=SECOND, slip_ratio=0, max_size=0).debit("x", SECOND).limited


# -- the handler -----------------------------------------------------------------------------


class Answers:
    """Answers by the first label: `nx*` NXDOMAIN with an SOA, `nodata*`, `fail*` SERVFAIL
    written, `quiet*` SERVFAIL without writing, anything else one A record."""

    name: ClassVar[str] = "answers"

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        label = req.name.split(".")[0]
        if label.startswith("quiet"):
            return rc.SERVFAIL
        if label.startswith("fail"):
            w.write(req.reply(aa=False, rcode=rc.SERVFAIL), self.name)
            return rc.SERVFAIL
        code = rc.NXDOMAIN if label.startswith("nx") else rc.NOERROR
        reply = req.reply(rcode=code)
        if label.startswith(("nx", "nodata")):
            soa = SOA("ns.example.org.", "h.example.org.", (1, 2, 3, 4, 5))
            reply.add_auth(RR("example.org.", rc.SOA, rdata=soa, ttl=5))
        else:
            reply.add_answer(RR(req.qname, rc.A, rdata=A("192.0.2.1"), ttl=5))
        w.write(reply, self.name)
        return code


def limiter(clock: FakeClock, nxt: Handler | None = None, **options: object) -> tuple[Rrl, Metrics]:
    kinds = ("responses_ns", "nodata_ns", "nxdomains_ns", "referrals_ns", "errors_ns")
    settings: dict[str, object] = dict.fromkeys(kinds, SECOND)
    settings.update(options)
    config = replace(DEFAULT, **settings)  # type: ignore[arg-type]
    metrics = Metrics()
    table = Table(
        window_ns=config.window_ns,
        slip_ratio=config.slip_ratio,
        max_size=config.max_table_size,
        clock=clock,
    )
    handler = Rrl(config, metrics_for(metrics), table, nxt or Answers())
    return handler, metrics


async def run(handler: Handler, req: Request) -> tuple[int, DNSRecord | None]:
    """Serve one request with `handler` as the head of the chain; (rcode, reply or None)."""
    w = RecordingWriter(req)
    code = await handler.serve(req, w)
    return code, w.reply()


async def ask(
    handler: Handler,
    qname: str,
    *,
    client: str = "192.0.2.10",
    proto: str = "udp",
    qtype: str = "A",
    edns: int | None = None,
) -> DNSRecord | None:
    """The reply `handler` sends to `client`, or None when it sends nothing."""
    req = make_request(qname, qtype, proto=proto, remote=(client, 5353), edns_size=edns)
    return (await run(handler, req))[1]


async def test_one_per_second_per_name_type_and_netblock() -> None:
    handler, metrics = limiter(FakeClock())
    assert await ask(handler, "a.example.org.") is not None
    assert await ask(handler, "a.example.org.") is None  # over the limit: dropped
    assert await ask(handler, "a.example.org.", client="192.0.2.99") is None  # same /24
    assert await ask(handler, "a.example.org.", client="192.0.3.10") is not None  # other /24
    assert await ask(handler, "b.example.org.") is not None  # other name
    assert await ask(handler, "a.example.org.", qtype="AAAA") is not None  # other type
    assert await ask(handler, "a.example.org.", proto="tcp") is not None  # TCP: never limited
    assert await ask(handler, "a.example.com.") is not None  # outside the zones
    assert metrics.exposition().decode().count("coredns_rrl_responses_exceeded_total{") == 1
    key = ("dns://:53", "example.org.", "")
    assert handler.metrics.responses_exceeded.get(key) == 2


async def test_nxdomain_is_accounted_by_zone_and_errors_all_together() -> None:
    handler, _ = limiter(FakeClock())
    assert await ask(handler, "nx1.example.org.") is not None
    assert await ask(handler, "nx2.example.org.") is None  # same SOA owner: same account
    assert await ask(handler, "nodata.example.org.") is not None  # NODATA: its own account
    assert await ask(handler, "fail1.example.org.") is not None
    assert await ask(handler, "fail2.example.org.", qtype="MX") is None
    # A failure the server answers itself (nothing written) is not limited, as coredns/rrl.
    code, reply = await run(handler, make_request("quiet.example.org.", "A"))
    assert code == rc.SERVFAIL and reply is None


async def test_slipped_reply_is_empty_truncated_and_keeps_edns() -> None:
    handler, _ = limiter(FakeClock(), slip_ratio=1)
    await ask(handler, "a.example.org.", edns=1232)
    reply = await ask(handler, "A.Example.org.", edns=1232)
    assert reply is not None
    assert reply.header.tc and reply.header.rcode == rc.NOERROR
    assert str(reply.q.qname) == "A.Example.org." and not reply.rr and not reply.auth
    assert [(r.rtype, r.rclass) for r in reply.ar] == [(41, 1232)]


async def test_exempt_clients_and_report_only() -> None:
    exempt = (ipaddress.ip_network("192.0.2.0/28"),)
    handler, _ = limiter(FakeClock(), exempt=exempt)
    for _ in range(3):
        assert await ask(handler, "a.example.org.") is not None
    handler, _ = limiter(FakeClock(), report_only=True)
    for _ in range(3):
        assert await ask(handler, "a.example.org.") is not None
    assert handler.metrics.responses_exceeded.get(("dns://:53", "example.org.", "")) == 2


async def test_requests_per_second_drops_queries_on_every_transport() -> None:
    seen: list[str] = []

    class Counting(Answers):
        async def serve(self, req: Request, w: ResponseWriter) -> int:
            seen.append(req.proto)
            return await super().serve(req, w)

    handler, _ = limiter(
        FakeClock(),
        Counting(),
        requests_ns=SECOND,
        responses_ns=0,
        nodata_ns=0,
        nxdomains_ns=0,
        referrals_ns=0,
        errors_ns=0,
    )
    assert await ask(handler, "a.example.org.") is not None
    assert await ask(handler, "b.example.org.", proto="tcp") is None
    assert await ask(handler, "c.example.org.", client="2001:db8::1") is not None
    assert seen == ["udp", "udp"]
    assert handler.metrics.requests_exceeded.get(("dns://:53", "example.org.", "")) == 1


async def test_ipv6_netblocks_are_56_bits() -> None:
    handler, _ = limiter(FakeClock())
    assert await ask(handler, "a.example.org.", client="2001:db8:0:100::1") is not None
    assert await ask(handler, "a.example.org.", client="2001:db8:0:1ff::2") is None
    assert await ask(handler, "a.example.org.", client="2001:db8:0:200::1") is not None


# -- through the real server -----------------------------------------------------------------


async def test_real_server_slips_then_tcp_answers() -> None:
    text = """.:0 {
    rrl {
        responses-per-second 0.1
        window 60
        slip-ratio 1
    }
    whoami
}
"""
    async with running_server(text) as server:
        port = server.port()
        q = dns.message.make_query("example.org.", "A")
        replies = [
            await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=TIMEOUT_S) for _ in range(5)
        ]
        assert [bool(r.flags & dns.flags.TC) for r in replies] == [False] + [True] * 4
        assert replies[0].additional and not any(r.additional for r in replies[1:])
        r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.NOERROR and r.additional and not r.flags & dns.flags.TC
        exceeded = server.config.process.metrics.exposition().decode()
        assert 'coredns_rrl_responses_exceeded_total{server="dns://:' in exceeded
