"""Process faults of the real command line under load (reliability.md P3, P6, and a full disk).

- SIGTERM while queries flow: `/ready` turns 503 at once, DNS keeps answering through the
  lameduck period, every query sent before the signal is answered, the process exits 0.
- The Corefile replaced by a broken one while queries flow: by SIGUSR1 and by the `reload`
  plugin's own check; the running configuration keeps answering (nothing lost, nothing wrong),
  the failure is logged (and counted for the plugin), a later good Corefile is taken.
- Logs to a full disk (stdout and stderr are /dev/full, every write fails with ENOSPC): the
  server keeps answering, logging every query.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Final

import dns.message
import dns.rcode
import pytest

from tests.e2e.support import http_get, metric
from tests.faults.support import Load, addresses, cli_server, expect_addresses, free_tcp_udp_port
from tests.plugins.kubernetes.cluster import REFERENCE_YAML

LAMEDUCK_S: Final = 2.0
CLUSTER: Final = {
    "api.prod.svc.cluster.local.": {"10.96.5.5"},
    "kubernetes.default.svc.cluster.local.": {"10.96.0.1"},
}


def corefile(*, port: int = 0, side: int = 0, hosts_ip: str = "192.0.2.10", extra: str = "") -> str:
    return (
        f".:{port} {{\n"
        "    bind 127.0.0.1\n"
        "    errors\n"
        f"    health 127.0.0.1:{side} {{\n        lameduck {LAMEDUCK_S:g}s\n    }}\n"
        f"    ready 127.0.0.1:{side}\n"
        f"    prometheus 127.0.0.1:{side}\n"
        f"{extra}"
        "    hosts {\n"
        f"        {hosts_ip} db.example.net\n"
        "        fallthrough\n"
        "    }\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        f"        from_yaml {REFERENCE_YAML}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "    }\n"
        "    whoami\n"
        "}\n"
    )


# -- P6: SIGTERM under load ----------------------------------------------------------------------
async def test_sigterm_under_load_answers_everything_sent_before_it(tmp_path: Path) -> None:
    side = free_tcp_udp_port()
    async with cli_server(corefile(side=side), tmp_path) as cli:
        assert (await http_get(side, "/ready"))[0] == 200
        load = Load(cli.port, sorted(CLUSTER), expect_addresses(CLUSTER), concurrency=8).start()
        await load.until(500)
        signalled = time.monotonic()
        cli.proc.send_signal(signal.SIGTERM)
        while (await http_get(side, "/ready"))[0] != 503:  # the signal is handled asynchronously
            assert time.monotonic() - signalled < 1.0, "/ready still 200 a second after SIGTERM"
        ready_503_after = time.monotonic() - signalled
        # DNS keeps answering during lameduck.
        answered_then = load.tally.answered
        await load.until(load.tally.sent + 200)
        assert load.tally.answered > answered_then
        code = await asyncio.wait_for(cli.proc.wait(), LAMEDUCK_S + 15)
        exited_after = time.monotonic() - signalled
        tally = await load.stop()
    assert code == 0
    assert ready_503_after < 1.0
    assert LAMEDUCK_S <= exited_after < LAMEDUCK_S + 10, exited_after
    before = [r for r in tally.records if r[0] < signalled]
    unanswered = [r for r in before if r[1] is None]
    assert before and not unanswered, (
        f"{len(unanswered)} of {len(before)} queries sent before SIGTERM"
    )
    in_lameduck = [r for r in tally.records if signalled <= r[0] < signalled + LAMEDUCK_S - 0.5]
    assert in_lameduck and all(r[1] is not None for r in in_lameduck), "lameduck queries lost"
    assert tally.wrong == 0, tally.summary()
    assert "[INFO] SIGTERM: Shutting down servers then terminating" in cli.lines


# -- P3: a broken Corefile while serving ----------------------------------------------------------
def hosts_or_cluster(allowed: dict[str, set[str]]) -> dict[str, set[str]]:
    return {**CLUSTER, "db.example.net.": allowed["db.example.net."]}


async def test_broken_corefile_by_sigusr1_keeps_serving_under_load(tmp_path: Path) -> None:
    async with cli_server(corefile(), tmp_path) as cli:
        port = cli.port
        table = hosts_or_cluster({"db.example.net.": {"192.0.2.10"}})

        def expect(name: str, msg: dns.message.Message) -> str | None:
            got = addresses(msg)
            if name == "db.example.net.":
                ok = got in ({"192.0.2.10"}, {"192.0.2.11"})
            else:
                ok = got == table[name]
            return None if ok and msg.rcode() == dns.rcode.NOERROR else f"{name}: {msg}"

        load = Load(port, sorted(table), expect, concurrency=4).start()
        await load.until(300)
        for broken in (
            f".:{port} {{\n    bind 127.0.0.1\n    whoami\n",  # unclosed block: a syntax error
            f".:{port} {{\n    bind 127.0.0.1\n    nosuchplugin\n    whoami\n}}\n",  # setup error
            corefile(port=port) + f".:{port} {{\n    whoami\n}}\n",  # the same zone twice
        ):
            mark = len(cli.lines)
            cli.conf.write_text(broken)
            cli.proc.send_signal(signal.SIGUSR1)
            await cli.wait_line(r"\[ERROR\] SIGUSR1: ", after=mark)
            await load.until(load.tally.sent + 200)
        mark = len(cli.lines)
        cli.conf.write_text(corefile(port=port, hosts_ip="192.0.2.11"))
        cli.proc.send_signal(signal.SIGUSR1)
        await cli.wait_line(r"Reloading complete", after=mark)
        await load.until(load.tally.sent + 200)
        tally = await load.stop()
        reply = await _ask(port, "db.example.net.")
        assert addresses(reply) == {"192.0.2.11"}, "the good Corefile after the broken ones"
    assert tally.lost == 0 and tally.wrong == 0, tally.summary()


async def test_broken_corefile_by_the_reload_plugin_keeps_serving_under_load(
    tmp_path: Path,
) -> None:
    side = free_tcp_udp_port()
    text = corefile(side=side, extra="    reload 2s 1s\n")
    async with cli_server(text, tmp_path) as cli:
        port = cli.port
        load = Load(port, sorted(CLUSTER), expect_addresses(CLUSTER), concurrency=4).start()
        await load.until(200)
        mark = len(cli.lines)
        cli.conf.write_text(text.replace("    whoami\n}", "    whoami\n"))  # unclosed block
        await cli.wait_line(r"\[WARNING\] plugin/reload: Corefile parse failed", after=mark)
        mark = len(cli.lines)
        cli.conf.write_text(text.replace("    whoami\n", "    whoami\n    nosuchplugin\n"))
        await cli.wait_line(r"\[ERROR\] Restart failed", after=mark)
        status, body = await http_get(side, "/metrics")
        assert status == 200 and metric(body, "coredns_reload_failed_total") == 1
        assert (await http_get(side, "/ready")) == (200, "OK"), "a failed reload leaves /ready"
        await load.until(load.tally.sent + 200)
        tally = await load.stop()
    assert tally.lost == 0 and tally.wrong == 0, tally.summary()


# -- logs to a full disk ---------------------------------------------------------------------------
async def test_logging_to_a_full_disk_does_not_stop_dns(tmp_path: Path) -> None:
    with open("/dev/full", "wb") as full:
        text = corefile(extra="    log\n")
        async with cli_server(text, tmp_path, stdout=full, args=("-quiet",)) as cli:
            load = Load(cli.port, sorted(CLUSTER), expect_addresses(CLUSTER), concurrency=4)
            load.start()
            await load.until(1000)
            tally = await load.stop()
            assert cli.proc.returncode is None, "the server died writing its log"
            for name in CLUSTER:
                assert (await _ask(cli.port, name)).rcode() == dns.rcode.NOERROR
    assert tally.lost == 0 and tally.wrong == 0, tally.summary()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "the start-up banner is written to stdout without handling OSError: with stdout on a "
        "full disk the server exits 1 at start (clusterdns/server/lifecycle.py:154, "
        "Server._banner, reached from Server.start:114); CoreDNS ignores the write error"
    ),
)
async def test_banner_on_a_full_disk_does_not_stop_the_start(tmp_path: Path) -> None:
    with open("/dev/full", "wb") as full:
        async with cli_server(corefile(), tmp_path, stdout=full) as cli:
            assert (await _ask(cli.port, "api.prod.svc.cluster.local.")).rcode() == 0


async def _ask(port: int, name: str) -> dns.message.Message:
    import dns.asyncquery

    q = dns.message.make_query(name, "A")
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)


# -- P4: a reload onto a port in use ---------------------------------------------------------------
async def test_reload_onto_a_port_in_use_is_rejected_and_the_old_listeners_stay(
    tmp_path: Path,
) -> None:
    busy_port = free_tcp_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", busy_port))
        async with cli_server(corefile(), tmp_path) as cli:
            load = Load(cli.port, sorted(CLUSTER), expect_addresses(CLUSTER)).start()
            await load.until(100)
            mark = len(cli.lines)
            extra = f"example.org:{busy_port} {{\n    bind 127.0.0.1\n    whoami\n}}\n"
            cli.conf.write_text(corefile(port=cli.port) + extra)
            cli.proc.send_signal(signal.SIGUSR1)
            line = await cli.wait_line(r"\[ERROR\] SIGUSR1: ", after=mark)
            assert str(busy_port) in line, line
            await load.until(load.tally.sent + 200)
            tally = await load.stop()
    assert tally.lost == 0 and tally.wrong == 0, tally.summary()
