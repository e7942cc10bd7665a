"""Process faults of the real command line under load (reliability.md P3, P6, and a full disk).

- SIGTERM while queries flow: `/ready` turns 503 at once, DNS keeps answering through the
  lameduck period, every query sent before the signal is answered, the process exits 0.
- The Corefile replaced by a broken one while queries flow: by SIGUSR1 and by the `reload`
  plugin's own check; the running configuration keeps answering (nothing lost, nothing wrong),
  the failure is logged (and counted for the plugin), a later good Corefile is taken.
- Logs to a full disk (stdout and stderr are /dev/full, every write fails with ENOSPC): the
  start-up banner, the query log and a reload's log lines are dropped, the server keeps
  answering, reloads and exits 0 on SIGTERM.

Every wait is on something the server shows (a log line, `/ready`, an answer, the process's exit),
bounded generously; lameduck is configured only where it is under test.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Final

import dns.asyncquery
import dns.message
import dns.rcode

from tests.e2e.support import http_get, metric
from tests.faults.support import (
    Load,
    addresses,
    cli_server,
    expect_addresses,
    write_atomically,
)
from tests.plugins.kubernetes.cluster import REFERENCE_YAML
from tests.ports import free_udp_tcp_port

LAMEDUCK_S: Final = 2.0
DRAIN_S: Final = 5.0
"""How long shutdown waits for queries in flight after lameduck (lifecycle.GRACE_S)."""
WAIT_S: Final = 60.0
"""Bound on any wait for the process (a start, an exit, a state change) on a loaded machine."""
CLUSTER: Final = {
    "api.prod.svc.cluster.local.": {"10.96.5.5"},
    "kubernetes.default.svc.cluster.local.": {"10.96.0.1"},
}


def corefile(
    *,
    port: int = 0,
    side: int = 0,
    hosts_ip: str = "192.0.2.10",
    extra: str = "",
    lameduck_s: float = 0.0,
) -> str:
    lameduck = f" {{\n        lameduck {lameduck_s:g}s\n    }}" if lameduck_s else ""
    return (
        f".:{port} {{\n"
        "    bind 127.0.0.1\n"
        "    errors\n"
        f"    health 127.0.0.1:{side}{lameduck}\n"
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
AFTER_503: Final = 100
"""Queries sent once `/ready` said 503 that must still be answered (lameduck keeps DNS up)."""


async def test_sigterm_under_load_answers_everything_sent_before_it(tmp_path: Path) -> None:
    side = free_udp_tcp_port()
    async with cli_server(corefile(side=side, lameduck_s=LAMEDUCK_S), tmp_path) as cli:
        assert (await http_get(side, "/ready"))[0] == 200
        load = Load(cli.port, sorted(CLUSTER), expect_addresses(CLUSTER), concurrency=8).start()
        await load.until(500)
        signalled = time.monotonic()
        cli.proc.send_signal(signal.SIGTERM)
        # The signal is handled asynchronously: /ready turns 503 when lameduck begins. Bounded
        # by the process's life (a failed GET once it exited fails the test) and WAIT_S.
        while (await http_get(side, "/ready"))[0] != 503:
            assert time.monotonic() - signalled < WAIT_S, "/ready never turned 503"
            await asyncio.sleep(0.01)  # pacing of the poll
        # DNS keeps answering during lameduck: the next queries, sent after /ready said 503, too.
        after_503 = load.tally.sent
        await load.until(after_503 + AFTER_503)
        code = await asyncio.wait_for(cli.proc.wait(), LAMEDUCK_S + DRAIN_S + WAIT_S)
        exited_after = time.monotonic() - signalled
        tally = await load.stop()
    assert code == 0
    assert exited_after >= LAMEDUCK_S, f"exited {exited_after:.2f} s after SIGTERM, before lameduck"
    before = [r for r in tally.records if r[0] < signalled]
    unanswered = [r for r in before if r[1] is None]
    assert before and not unanswered, (
        f"{len(unanswered)} of {len(before)} queries sent before SIGTERM"
    )
    in_lameduck = tally.records[len(before) : after_503 + AFTER_503]
    lost = [r for r in in_lameduck if r[1] is None]
    assert not lost, f"{len(lost)} of {len(in_lameduck)} queries sent during lameduck lost"
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
    side = free_udp_tcp_port()
    text = corefile(side=side, extra="    reload 2s 1s\n")
    async with cli_server(text, tmp_path) as cli:
        port = cli.port
        load = Load(port, sorted(CLUSTER), expect_addresses(CLUSTER), concurrency=4).start()
        await load.until(200)
        # Replaced in one step: the plugin checks on its own schedule and must never read a
        # half-written file (an empty Corefile is another configuration altogether).
        mark = len(cli.lines)
        write_atomically(cli.conf, text.replace("    whoami\n}", "    whoami\n"))  # unclosed
        await cli.wait_line(r"\[WARNING\] plugin/reload: Corefile parse failed", after=mark)
        mark = len(cli.lines)
        write_atomically(cli.conf, text.replace("    whoami\n", "    whoami\n    nosuchplugin\n"))
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


async def test_banner_query_log_and_reload_on_a_full_disk_do_not_stop_the_server(
    tmp_path: Path,
) -> None:
    """Without -quiet: the banner's write fails first (it used to make the server exit 1)."""
    with open("/dev/full", "wb") as full:
        async with cli_server(corefile(extra="    log\n"), tmp_path, stdout=full) as cli:
            load = Load(cli.port, sorted(CLUSTER), expect_addresses(CLUSTER), concurrency=4)
            load.start()
            await load.until(500)  # every one logged by `log`, every line lost
            # A reload logs too (Reloading, Reloading complete): it must still take effect.
            cli.conf.write_text(corefile(port=cli.port, hosts_ip="192.0.2.11", extra="    log\n"))
            cli.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + WAIT_S
            while addresses(await _ask(cli.port, "db.example.net.")) != {"192.0.2.11"}:
                assert time.monotonic() < deadline, "the reload never took effect"
                await asyncio.sleep(0.05)  # pacing of the poll
            await load.until(load.tally.sent + 200)
            tally = await load.stop()
            assert cli.proc.returncode is None, "the server died writing its log"
        code = cli.proc.returncode
    assert tally.lost == 0 and tally.wrong == 0, tally.summary()
    assert code == 0, f"exit status {code} after SIGTERM with stdout on a full disk"


async def _ask(port: int, name: str) -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)


# -- P4: a reload onto a port in use ---------------------------------------------------------------
async def test_reload_onto_a_port_in_use_is_rejected_and_the_old_listeners_stay(
    tmp_path: Path,
) -> None:
    busy_port = free_udp_tcp_port()
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
