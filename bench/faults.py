"""Fault injection, scenario by scenario, printing what happened (the fault tests' figures).

    .venv/bin/python bench/faults.py                 # every scenario (about 2 minutes)
    .venv/bin/python bench/faults.py --only k8s-down,sigterm
    .venv/bin/python bench/faults.py --list

Each scenario runs the real server (in process, or the command line as a child process where
signals or stdout matter) on loopback against the Kubernetes API test double and scripted
upstreams, keeps a steady query load running through the fault, and prints one block: what was
done, what the clients saw (sent, answered, lost, wrong, rcodes), how long recovery took, and
whether the watch cache ended equal to the API. The assertions live in `tests/faults/`; this
script shows the numbers. Every wait is bounded (`--budget`, default 600 s for the whole run).
Exit status: 0 when every scenario ended as documented, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dns.asyncquery  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

from clusterdns.k8s.objects import Kind  # noqa: E402
from clusterdns.plugins.forward import Forward  # noqa: E402
from tests.dnstest import running_server  # noqa: E402
from tests.e2e.support import http_get, reference_objects  # noqa: E402
from tests.faults.support import (  # noqa: E402
    Churn,
    Load,
    Tally,
    api_down,
    api_up,
    churn_diff,
    cli_server,
    diff_store,
    expect_addresses,
    handlers,
    kubernetes_store,
    slow_proxy,
)
from tests.k8s.fakeapi import FakeApi  # noqa: E402
from tests.plugins.kubernetes.cluster import REFERENCE_YAML  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.upstream import Drop, ForwardTo, scripted_upstream  # noqa: E402

KINDS: Final = (Kind.NAMESPACE, Kind.SERVICE, Kind.ENDPOINTSLICE)
STABLE: Final = {
    "kubernetes.default.svc.cluster.local.": {"10.96.0.1"},
    "api.prod.svc.cluster.local.": {"10.96.5.5"},
    "web.prod.svc.cluster.local.": {"10.244.1.10", "10.244.2.11", "10.244.3.12"},
}
WAIT_S: Final = 60.0


@dataclass
class Report:
    """What one scenario did and saw."""

    name: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)

    def expect(self, condition: bool, text: str) -> None:
        self.lines.append(("  ok    " if condition else "  WRONG ") + text)
        self.ok = self.ok and condition

    def load(self, tally: Tally) -> None:
        codes = " ".join(f"{k}={v}" for k, v in sorted(tally.rcodes.items()))
        self.say(
            f"  load: sent {tally.sent}, answered {tally.answered}, lost {tally.lost}, "
            f"wrong {tally.wrong} ({codes})"
        )
        self.expect(tally.lost == 0 and tally.wrong == 0, "no query lost, no wrong answer")


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> float:
    """Seconds until `condition()` held (polled every 20 ms); raises after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def k8s_corefile(url: str) -> str:
    return (
        ".:0 {\n    bind 127.0.0.1\n    ready 127.0.0.1:0\n"
        f"    kubernetes cluster.local {{\n        endpoint {url}\n"
        "        pods insecure\n    }\n}\n"
    )


# -- Kubernetes API scenarios -------------------------------------------------------------------
async def k8s_scenario(report: Report, fault: str) -> None:
    fake = FakeApi().start()
    fake.load(reference_objects())
    try:
        async with (
            slow_proxy(fake.port) as proxy,
            running_server(k8s_corefile(proxy.url)) as server,
        ):
            store = kubernetes_store(server.config)
            await until(lambda: store.synced, "first sync")
            churn = Churn(fake, rate_per_s=10.0)
            churning = asyncio.get_running_loop().create_task(churn.run())
            load = Load(server.port(), sorted(STABLE), expect_addresses(STABLE)).start()

            def converged() -> bool:
                return not diff_store(store, fake, KINDS) and not churn_diff(store, churn)

            await until(converged, "converged before the fault")
            lists = len(fake.requests(verb="list"))
            start = time.monotonic()
            steps = churn.steps
            if fault == "down":
                api_down(fake)  # nothing reaches the server from here until api_up
                await until(lambda: churn.steps >= steps + 15, "changes while down")
                unseen = len(churn_diff(store, churn))
                report.say(
                    f"  API down for {time.monotonic() - start:.1f} s, "
                    f"{churn.steps - steps} changes made meanwhile ({unseen} churned names "
                    "differing from the server's cache just before the restart)"
                )
                api_up(fake)
            elif fault == "410":
                resources = ("namespaces", "services", "endpointslices")
                for r in resources:
                    fake.forbid(r)
                fake.drop_watches()
                await until(lambda: churn.steps >= steps + 10, "changes while cut off")
                fake.compact()
                for r in resources:
                    fake.allow(r)
                report.say("  watches cut, history compacted: re-watching gets 410 Gone")
            elif fault == "500":
                asked = len(fake.requests())
                fake.fail_next(12, 500)
                fake.drop_watches()
                await until(lambda: len(fake.requests()) >= asked + 12, "twelve failed requests")
                report.say(
                    f"  12 API requests answered 500 over {time.monotonic() - start:.1f} s "
                    "(watches cut first)"
                )
            elif fault == "403":
                fake.forbid("services")
                fake.forbid("endpointslices")
                fake.drop_watches()
                await until(lambda: churn.steps >= steps + 10, "changes while forbidden")
                fake.allow("services")
                fake.allow("endpointslices")
                report.say(f"  RBAC revoked for {time.monotonic() - start:.1f} s (403)")
            elif fault == "slow":
                proxy.delay_s = 0.5
                await until(lambda: churn.steps >= steps + 20, "changes while slow")
                proxy.delay_s = 0.0
                report.say(f"  every API chunk delayed 0.5 s for {time.monotonic() - start:.1f} s")
            back = time.monotonic()
            took = await until(converged, "converged after the fault")
            churn.stop()
            await churning
            await until(converged, "converged at the end")
            tally = await load.stop()
            relists = len(fake.requests(verb="list")) - lists
            report.say(
                f"  watch cache equal to the API {took:.2f} s after the fault ended "
                f"({relists} relists; {churn.objects} objects churned at 10/s)"
            )
            report.expect(not diff_store(store, fake, KINDS), "no object lost or duplicated")
            report.load(tally)
            del back
    finally:
        fake.down()


# -- upstream scenarios ---------------------------------------------------------------------------
def forward_corefile(upstreams: str, *options: str) -> str:
    opts = "".join(f"        {o}\n" for o in options)
    return (
        ".:0 {\n    bind 127.0.0.1\n    errors\n"
        f"    kubernetes cluster.local {{\n        from_yaml {REFERENCE_YAML}\n    }}\n"
        f"    forward . {upstreams} {{\n{opts}    }}\n    cache 30\n    loop\n}}\n"
    )


def rcode_text(code: int) -> str:
    return dns.rcode.to_text(dns.rcode.Rcode(code))


async def ask(port: int, name: str) -> tuple[int, float]:
    start = time.monotonic()
    reply = await dns.asyncquery.udp(
        dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=10
    )
    return reply.rcode(), time.monotonic() - start


async def upstreams_down(report: Report) -> None:
    async with scripted_upstream() as a, scripted_upstream() as b:
        for up in (a, b):
            up.always(Drop())
        text = forward_corefile(
            f"{a.addr} {b.addr}",
            "read_timeout 300ms",
            "health_check 100ms",
            "failfast_all_unhealthy_upstreams",
        )
        async with running_server(text) as server:
            port = server.port()
            code, took = await ask(port, "example.com.")
            report.expect(
                code == dns.rcode.SERVFAIL,
                f"first query: {rcode_text(code)} after {took:.2f} s (budget 5 s)",
            )
            (fwd,) = [h for h in handlers(server.config) if isinstance(h, Forward)]
            took = await until(
                lambda: all(p.down for p in fwd.proxies), "health checks take both upstreams out"
            )
            report.say(f"  health checks (every 100 ms) marked both upstreams down in {took:.2f} s")
            code, took = await ask(port, "db.example.com.")
            report.expect(
                code == dns.rcode.SERVFAIL and took < 1.0,
                f"with every upstream down: {rcode_text(code)} in {took:.3f} s",
            )
            code, took = await ask(port, "api.prod.svc.cluster.local.")
            report.expect(
                code == dns.rcode.NOERROR,
                f"cluster names meanwhile: {rcode_text(code)} in {took:.3f} s",
            )
            for up in (a, b):
                up.clear()
            start = time.monotonic()
            while (await ask(port, "example.com."))[0] != dns.rcode.NOERROR:
                assert time.monotonic() - start < WAIT_S
                await asyncio.sleep(0.05)
            report.say(f"  upstreams back: answers again after {time.monotonic() - start:.2f} s")


async def upstream_loop(report: Report) -> None:
    async with (
        scripted_upstream() as up,
        running_server(forward_corefile(up.addr, "read_timeout 300ms")) as server,
    ):
        port = server.port()
        up.always(ForwardTo("127.0.0.1", port, timeout_s=1.0))
        code, took = await ask(port, "example.com.")
        report.expect(
            code == dns.rcode.SERVFAIL,
            f"a looping name: {rcode_text(code)} after {took:.2f} s",
        )
        code, _ = await ask(port, "api.prod.svc.cluster.local.")
        report.expect(code == dns.rcode.NOERROR, "cluster names still answered")
        report.expect(not server.stopped.is_set(), "the server is still running (no exit)")
        report.say(f"  upstream saw {len(up.queries())} queries")


# -- process scenarios -----------------------------------------------------------------------------
def cli_corefile(port: int = 0, side: int = 0, extra: str = "") -> str:
    return (
        f".:{port} {{\n    bind 127.0.0.1\n    errors\n"
        f"    health 127.0.0.1:{side} {{\n        lameduck 2s\n    }}\n    ready 127.0.0.1:{side}\n"
        f"{extra}    kubernetes cluster.local {{\n        from_yaml {REFERENCE_YAML}\n    }}\n"
        "    whoami\n}\n"
    )


async def sigterm(report: Report) -> None:
    side = free_udp_tcp_port()
    with tempfile.TemporaryDirectory() as folder:
        async with cli_server(cli_corefile(side=side), Path(folder)) as cli:
            load = Load(cli.port, sorted(STABLE), expect_addresses(STABLE), concurrency=8).start()
            await load.until(500)
            at = time.monotonic()
            cli.proc.send_signal(signal.SIGTERM)
            while (await http_get(side, "/ready"))[0] != 503:
                pass
            ready_s = time.monotonic() - at
            code = await asyncio.wait_for(cli.proc.wait(), 20)
            exit_s = time.monotonic() - at
            tally = await load.stop()
    before = [r for r in tally.records if r[0] < at]
    lost = sum(1 for r in before if r[1] is None)
    during = [r for r in tally.records if at <= r[0] < at + 1.5]
    report.say(
        f"  /ready 503 {ready_s * 1000:.0f} ms after SIGTERM; exit {code} after {exit_s:.2f} s "
        "(lameduck 2 s)"
    )
    report.expect(lost == 0, f"{len(before)} queries sent before the signal, {lost} unanswered")
    report.expect(
        all(r[1] is not None for r in during),
        f"{len(during)} queries in the first 1.5 s of lameduck, all answered",
    )
    report.expect(code == 0, "exit status 0")


async def broken_corefile(report: Report) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with cli_server(cli_corefile(), Path(folder)) as cli:
            load = Load(cli.port, sorted(STABLE), expect_addresses(STABLE)).start()
            await load.until(200)
            for what, text in (
                ("syntax error", f".:{cli.port} {{\n    whoami\n"),
                ("unknown plugin", f".:{cli.port} {{\n    nosuchplugin\n}}\n"),
            ):
                mark = len(cli.lines)
                cli.conf.write_text(text)
                cli.proc.send_signal(signal.SIGUSR1)
                line = await cli.wait_line(r"\[ERROR\] SIGUSR1: ", after=mark)
                report.say(f"  {what}: {line[:110]}")
                await load.until(load.tally.sent + 200)
            report.load(await load.stop())


async def full_disk(report: Report) -> None:
    with tempfile.TemporaryDirectory() as folder, open("/dev/full", "wb") as full:
        async with cli_server(
            cli_corefile(extra="    log\n"), Path(folder), stdout=full, args=("-quiet",)
        ) as cli:
            load = Load(cli.port, sorted(STABLE), expect_addresses(STABLE)).start()
            await load.until(1000)
            report.say("  stdout and stderr on /dev/full (every write: ENOSPC), `log` on, -quiet")
            report.load(await load.stop())
            report.expect(cli.proc.returncode is None, "still running")
        async with cli_server(cli_corefile(extra="    log\n"), Path(folder), stdout=full) as cli:
            load = Load(cli.port, sorted(STABLE), expect_addresses(STABLE)).start()
            await load.until(1000)
            report.say("  without -quiet: started (the banner's failed write ignored), `log` on")
            report.load(await load.stop())
        report.expect(cli.proc.returncode == 0, f"exit status {cli.proc.returncode} on SIGTERM")


SCENARIOS: Final[dict[str, tuple[str, Callable[[Report], Awaitable[None]]]]] = {
    "k8s-down": (
        "K2: API server killed mid-watch and restarted",
        lambda r: k8s_scenario(r, "down"),
    ),
    "k8s-410": ("K3: watch history gone (410), relist", lambda r: k8s_scenario(r, "410")),
    "k8s-500": ("API answering 500", lambda r: k8s_scenario(r, "500")),
    "k8s-403": ("API answering 403 after the sync", lambda r: k8s_scenario(r, "403")),
    "k8s-slow": ("API answering slowly", lambda r: k8s_scenario(r, "slow")),
    "upstreams-down": ("F8/F9: every upstream down", upstreams_down),
    "upstream-loop": ("F14: an upstream that loops back", upstream_loop),
    "broken-corefile": ("P3: Corefile replaced by a broken one (SIGUSR1)", broken_corefile),
    "sigterm": ("P6: SIGTERM under load", sigterm),
    "full-disk": ("logs to a full disk", full_disk),
}


async def run(names: Sequence[str], budget_s: float) -> int:
    failed = 0
    deadline = time.monotonic() + budget_s
    for name in names:
        title, scenario = SCENARIOS[name]
        report = Report(name)
        start = time.monotonic()
        try:
            await asyncio.wait_for(scenario(report), max(1.0, deadline - time.monotonic()))
        except (TimeoutError, AssertionError, OSError) as exc:
            report.expect(False, f"did not complete: {type(exc).__name__}: {exc}")
        print(
            f"== {name}: {title} ({time.monotonic() - start:.1f} s) "
            f"{'as documented' if report.ok else 'NOT AS DOCUMENTED'}"
        )
        for line in report.lines:
            print(line)
        sys.stdout.flush()
        failed += not report.ok
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios; see the module docstring."""
    p = argparse.ArgumentParser(prog="bench/faults.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated scenario names")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    p.add_argument("--budget", type=float, default=600.0, help="seconds for the whole run")
    args = p.parse_args(argv)
    if args.list:
        for name, (title, _) in SCENARIOS.items():
            print(f"{name:16} {title}")
        return 0
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    return asyncio.run(run(names, args.budget))


if __name__ == "__main__":
    sys.exit(main())
