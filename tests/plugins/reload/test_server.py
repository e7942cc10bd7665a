"""Reloads through the real server, in process: answers, failures, listeners, load, ConfigMaps."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import socket
import weakref
from collections import Counter
from pathlib import Path

import pytest
from dnslib import DNSRecord

from clusterdns.chain.build import Config
from clusterdns.errors import ServerError
from clusterdns.plugins.health import Health
from tests.dnstest import TIMEOUT_S, http_get, udp_exchange
from tests.plugins.reload.harness import (
    Gate,
    Running,
    answers,
    capture,
    log_lines,
    running,
    until,
)
from tests.upstream import Answer, Wait, Zone, scripted_upstream

HOSTS = """\
.:0 {{
    bind 127.0.0.1
    reload 1h
    hosts {{
        {addr} www.example.org
    }}
}}
"""


def version_series(r: Running) -> list[str]:
    return re.findall(
        r'coredns_reload_version_info\{hash="sha512",value="([0-9a-f]+)"\} 1\.0', r.scrape()
    )


def failed_total(r: Running) -> float:
    m = re.search(r"^coredns_reload_failed_total (\S+)$", r.scrape(), re.M)
    assert m is not None
    return float(m.group(1))


def reload_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        line
        for line in log_lines(caplog)
        if "Reload" in line or "reload" in line or "Restart" in line
    ]


async def tcp_query(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str
) -> DNSRecord:
    wire = DNSRecord.question(name, "A").pack()
    writer.write(len(wire).to_bytes(2, "big") + wire)
    await writer.drain()
    async with asyncio.timeout(TIMEOUT_S):
        size = int.from_bytes(await reader.readexactly(2), "big")
        return DNSRecord.parse(await reader.readexactly(size))


async def test_reload_changes_a_hosts_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture(caplog)
    async with running(tmp_path / "Corefile", HOSTS.format(addr="192.0.2.1")) as r:
        port = r.dns_port
        first = r.poller.digest
        assert answers(await r.query("www.example.org.")) == ["192.0.2.1"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a TCP client stays
        assert answers(await tcp_query(reader, writer, "www.example.org.")) == ["192.0.2.1"]
        assert version_series(r) == []  # Q29: absent at start-up
        assert await r.check() is False
        r.write(HOSTS.format(addr="192.0.2.2"))
        assert await r.check() is True
        assert r.dns_port == port  # the socket was kept
        assert answers(await r.query("www.example.org.")) == ["192.0.2.2"]
        # The same TCP connection, now answered by the new configuration.
        assert answers(await tcp_query(reader, writer, "www.example.org.")) == ["192.0.2.2"]
        writer.close()
        second = r.poller.digest  # the new configuration's poller
        assert second != first
        assert version_series(r) == [second]
        assert failed_total(r) == 0
        assert r.lameduck_waits == []
    assert reload_lines(caplog) == [
        f"[INFO] plugin/reload: Running configuration SHA512 = {first}",
        "[INFO] Reloading",
        f"[INFO] plugin/reload: Running configuration SHA512 = {second}",
        "[INFO] Reloading complete",
    ]


async def test_broken_corefile_keeps_the_old_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture(caplog)
    path = tmp_path / "Corefile"
    async with running(path, HOSTS.format(addr="192.0.2.1")) as r:
        old = r.config
        # An unknown directive on line 7, then a setup error on line 5.
        r.write(HOSTS.format(addr="192.0.2.1").replace("    }\n}", "    }\n    nosuch\n}"))
        caplog.clear()
        assert await r.check() is True
        assert r.config is old
        assert answers(await r.query("www.example.org.")) == ["192.0.2.1"]
        assert failed_total(r) == 1
        broken = r.poller.digest
        assert version_series(r) == [broken]  # Q29: the digest of the failed Corefile
        error = f"{path}:7: Unknown directive 'nosuch'"
        assert reload_lines(caplog) == [
            "[INFO] Reloading",
            f"[ERROR] Restart failed: {error}",
            "[ERROR] plugin/reload: Corefile changed but reload failed: "
            f"starting with listener file descriptors: {error}",
        ]
        caplog.clear()
        assert await r.check() is False  # not retried while the file stays the same
        assert reload_lines(caplog) == [] and failed_total(r) == 1

        r.write(HOSTS.format(addr="192.0.2.1").replace("    hosts {", "    hosts {\n        ttl 0"))
        assert await r.check() is True
        assert r.config is old and failed_total(r) == 2
        lines = reload_lines(caplog)
        assert lines[1].startswith(f"[ERROR] Restart failed: {path}:5: hosts: ")
        assert lines[2].startswith(
            "[ERROR] plugin/reload: Corefile changed but reload failed: "
            f"starting with listener file descriptors: {path}:5: hosts: "
        )

        r.write(HOSTS.format(addr="192.0.2.3"))
        assert await r.check() is True
        assert r.config is not old and failed_total(r) == 2
        assert answers(await r.query("www.example.org.")) == ["192.0.2.3"]
        assert version_series(r) == [r.poller.digest]


async def test_a_reload_that_fails_to_start_stops_what_it_started(tmp_path: Path) -> None:
    healths: list[Health] = []
    started: list[bool] = []

    def fail_last(config: Config) -> None:
        owners = [getattr(hook, "__self__", None) for hook in config.process.startup]
        healths.extend(o for o in owners if isinstance(o, Health))

        async def boom() -> None:
            started.extend(h.task is not None for h in healths)
            raise ServerError("boom")

        config.process.startup.append(boom)

    text = HOSTS.format(addr="192.0.2.1").replace("reload 1h", "reload 1h\n    health 127.0.0.1:0")
    async with running(tmp_path / "Corefile", text, tweak=fail_last) as r:
        old = r.config
        health_port = r.side_port("127.0.0.1:0")
        r.write(text.replace("192.0.2.1", "192.0.2.9"))
        assert await r.check() is True
        assert r.config is old and failed_total(r) == 1
        (health,) = healths
        assert started == [True] and health.task is None  # started, then stopped again
        assert (await http_get(health_port, "/health")).status_body == (200, b"OK")
        assert answers(await r.query("www.example.org.")) == ["192.0.2.1"]


async def test_the_replaced_configuration_is_freed(tmp_path: Path) -> None:
    text = ".:0 {\n    bind 127.0.0.1\n    reload 1h\n    whoami\n}\n"
    async with running(tmp_path / "Corefile", text) as r:
        old = weakref.ref(r.config)
        old_poller = weakref.ref(r.poller)
        r.write(text.replace("whoami", "whoami\n    log"))
        assert await r.check() is True
        gc.collect()
        assert old() is None and old_poller() is None


async def test_shutdown_during_a_reload_abandons_the_reload(tmp_path: Path) -> None:
    gate = Gate()
    made: list[Config] = []
    text = SIDE.format(ready="127.0.0.1:0", addr="192.0.2.1")
    async with running(tmp_path / "Corefile", text, gate=gate, tweak=made.append) as r:
        old = r.config
        r.write(SIDE.format(ready="127.0.0.2:0", addr="192.0.2.2"))
        reload = asyncio.create_task(r.check())
        async with asyncio.timeout(10):
            await gate.entered.wait()
        stopping = asyncio.create_task(r.server.stop(graceful=False))
        await asyncio.sleep(0)
        assert not stopping.done()  # shutdown waits for the reload to finish or give up
        gate.release.set()
        async with asyncio.timeout(10):
            assert await reload is True
            await stopping
        (new,) = made
        assert r.config is old and failed_total(r) == 1
        assert new.process.http.listeners["127.0.0.2:0"].server is None  # closed again
        assert old.process.http.listeners["127.0.0.1:0"].server is None  # normal shutdown


SIDE = """\
.:0 {{
    bind 127.0.0.1
    reload 1h
    health 127.0.0.1:0 {{
        lameduck 5s
    }}
    ready {ready}
    prometheus 127.0.0.1:0
    hosts {{
        {addr} www.example.org
    }}
}}
"""


async def test_side_listeners_stay_up_and_nothing_enters_lameduck(tmp_path: Path) -> None:
    gate = Gate()
    made: list[Config] = []
    async with running(
        tmp_path / "Corefile",
        SIDE.format(ready="127.0.0.1:0", addr="192.0.2.1"),
        gate=gate,
        tweak=made.append,
    ) as r:
        old = r.config
        kept = old.process.http.listeners["127.0.0.1:0"]  # health, ready and prometheus
        port = kept.port
        assert (await http_get(port, "/ready")).status_body == (200, b"OK")

        r.write(SIDE.format(ready="127.0.0.2:0", addr="192.0.2.2"))
        reload = asyncio.create_task(r.check())
        async with asyncio.timeout(10):
            await gate.entered.wait()
        # Half-way: the new configuration has started, the old one still serves everything.
        (new,) = made
        moved = new.process.http.listeners["127.0.0.2:0"]
        assert moved.server is not None  # the changed address is bound before the old closes
        assert (await http_get(moved.port, "/ready", host="127.0.0.2")).status_body == (200, b"OK")
        assert (await http_get(port, "/ready")).status_body == (200, b"OK")
        assert (await http_get(port, "/health")).status_body == (200, b"OK")
        assert answers(await r.query("www.example.org.")) == ["192.0.2.1"]
        gate.release.set()
        async with asyncio.timeout(10):
            assert await reload is True
        assert r.config is new
        # The unchanged address is the same listener, bound all along, now with the new routes.
        assert new.process.http.listeners["127.0.0.1:0"] is kept and kept.port == port
        assert (await http_get(port, "/health")).status_body == (200, b"OK")
        assert (await http_get(port, "/metrics")).status == 200
        assert (await http_get(port, "/ready")).status == 404  # /ready moved to the other address
        assert (await http_get(moved.port, "/ready", host="127.0.0.2")).status_body == (200, b"OK")
        assert answers(await r.query("www.example.org.")) == ["192.0.2.2"]
        assert r.lameduck_waits == []  # `lameduck 5s` applies to shutdown only
        assert not old.process.shutting_down and not new.process.shutting_down


async def test_dns_listeners_added_and_removed(tmp_path: Path) -> None:
    one = HOSTS.format(addr="192.0.2.1")
    two = one + "example.net:0 {\n    bind 127.0.0.2\n    whoami\n}\n"
    async with running(tmp_path / "Corefile", one) as r:
        kept = r.server.listeners[("dns", "127.0.0.1", r.dns_port)]
        r.write(two)
        assert await r.check() is True
        added = [k for k in r.server.listeners if k[1] == "127.0.0.2"]
        assert len(added) == 1 and r.server.listeners[(*kept.key[:2], r.dns_port)] is kept
        other_port = added[0][2]
        reply = DNSRecord.parse(
            await udp_exchange(
                other_port, DNSRecord.question("x.example.net.").pack(), host="127.0.0.2"
            )
        )
        assert reply.header.rcode == 0 and reply.ar  # whoami
        r.write(one)
        assert await r.check() is True
        assert list(r.server.listeners) == [("dns", "127.0.0.1", r.dns_port)]
        # The dropped listener's port is free again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", other_port))


# -- a forward target changes while queries run -----------------------------------------------

FORWARD = """\
.:0 {{
    bind 127.0.0.1
    reload 1h
    ready 127.0.0.1:0
    health 127.0.0.1:0
    prometheus 127.0.0.1:0
    forward . {upstream}
}}
"""
QUERIES = 2000
WINDOW = 32
OLD_ANSWER = "192.0.2.10"
NEW_ANSWER = "192.0.2.99"
NAMES = [f"n{i}.example.com." for i in range(2 * WINDOW)]
"""More names than queries in flight, so that forward seldom merges identical queries."""


def zone_answering(address: str) -> Zone:
    return Zone([f"{name} 300 IN A {address}" for name in NAMES])


class LoadClient:
    """Sends QUERIES A queries over UDP, at most WINDOW outstanding; tallies the outcomes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self.answered = 0
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._progress: list[tuple[int, asyncio.Event]] = []

    def reached(self, count: int) -> asyncio.Event:
        event = asyncio.Event()
        if self.answered >= count:
            event.set()
        else:
            self._progress.append((count, event))
        return event

    def _tally(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.answered += 1
        for count, event in self._progress:
            if self.answered >= count:
                event.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        waiting = self._waiting

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                future = waiting.get(int.from_bytes(data[:2], "big"))
                if future is not None and not future.done():
                    future.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            Protocol, remote_addr=("127.0.0.1", self.port)
        )
        window = asyncio.Semaphore(WINDOW)

        async def one(qid: int) -> None:
            async with window:
                q = DNSRecord.question(NAMES[qid % len(NAMES)], "A")
                q.header.id = qid
                future = waiting[qid] = loop.create_future()
                transport.sendto(q.pack())
                try:
                    async with asyncio.timeout(TIMEOUT_S):
                        reply = DNSRecord.parse(await future)
                except TimeoutError:
                    self._tally("unanswered")
                    return
                if reply.header.rcode != 0 or len(reply.rr) != 1:
                    self._tally(f"failed rcode={reply.header.rcode} answers={len(reply.rr)}")
                    return
                self._tally(str(reply.rr[0].rdata))

        try:
            await asyncio.gather(*(one(qid) for qid in range(1, QUERIES + 1)))
        finally:
            transport.close()


async def test_forward_target_changes_under_load_without_a_failed_query(tmp_path: Path) -> None:
    gate = Gate()
    async with (
        scripted_upstream(zone_answering(OLD_ANSWER)) as old_up,
        scripted_upstream(zone_answering(NEW_ANSWER)) as new_up,
        running(tmp_path / "Corefile", FORWARD.format(upstream=old_up.addr), gate=gate) as r,
    ):
        side_port = r.side_port("127.0.0.1:0")
        statuses: list[int] = []
        polling = True

        async def poll_ready() -> None:
            while polling:
                statuses.append((await http_get(side_port, "/ready")).status)

        client = LoadClient(r.dns_port)
        load = asyncio.create_task(client.run())
        poller = asyncio.create_task(poll_ready())
        async with asyncio.timeout(60):
            await client.reached(QUERIES // 4).wait()
            r.write(FORWARD.format(upstream=new_up.addr))
            reload = asyncio.create_task(r.check())
            await gate.entered.wait()
            # The new configuration is starting; queries and probes keep going meanwhile.
            polls = len(statuses)
            await client.reached(QUERIES // 2).wait()
            while len(statuses) < polls + 3:
                await asyncio.sleep(0)
            gate.release.set()
            assert await reload is True
            await load
            polling = False
            await poller
        assert client.outcomes[OLD_ANSWER] >= QUERIES // 2
        assert client.outcomes[NEW_ANSWER] > 0
        assert sum(client.outcomes.values()) == QUERIES
        assert set(client.outcomes) == {OLD_ANSWER, NEW_ANSWER}, client.outcomes
        assert set(statuses) == {200} and len(statuses) > 3
        # Nearly every query reached an upstream (forward merges identical ones in flight).
        assert len(old_up.queries()) + len(new_up.queries()) > QUERIES * 9 // 10
        assert r.lameduck_waits == []


async def test_queries_in_flight_at_the_switch_finish_on_the_old_configuration(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    async with (
        scripted_upstream(zone_answering(OLD_ANSWER)) as old_up,
        scripted_upstream(zone_answering(NEW_ANSWER)) as new_up,
        running(tmp_path / "Corefile", FORWARD.format(upstream=old_up.addr)) as r,
    ):
        old_up.on(Wait(release), Answer(), qname=NAMES[0])
        old = r.config
        query = asyncio.create_task(r.query(NAMES[0]))
        await old_up.wait_for(where=lambda q: q.qname == NAMES[0])
        r.write(FORWARD.format(upstream=new_up.addr))
        reload = asyncio.create_task(r.check())
        await until(lambda: r.config is not old)  # switched; the held query is still in flight
        assert answers(await r.query(NAMES[1])) == [NEW_ANSWER]
        assert not reload.done()  # the old configuration is not shut down under the query
        release.set()
        async with asyncio.timeout(10):
            assert answers(await query) == [OLD_ANSWER]
            assert await reload is True


# -- the ConfigMap volume ------------------------------------------------------------------------

CONFIGMAP = """\
.:0 {{
    bind 127.0.0.1
    reload 1h
    import {snippet}
}}
"""


def configmap_version(root: Path, stamp: str, files: dict[str, str]) -> None:
    """Publish a ConfigMap version as the kubelet's atomic writer does."""
    version = root / f"..{stamp}"
    version.mkdir()
    for name, text in files.items():
        (version / name).write_text(text)
    first = not (root / "..data").exists()
    tmp = root / "..data_tmp"
    tmp.symlink_to(version.name)
    old = os.readlink(root / "..data") if not first else None
    os.rename(tmp, root / "..data")  # the atomic switch
    if first:
        for name in files:
            (root / name).symlink_to(f"..data/{name}")
    if old is not None:
        for leftover in (root / old).iterdir():
            leftover.unlink()
        (root / old).rmdir()


async def test_configmap_symlink_swap(tmp_path: Path) -> None:
    root = tmp_path / "config-volume"
    root.mkdir()
    configmap_version(
        root,
        "2026_11_28_10_00_00.000000001",
        {
            "Corefile": CONFIGMAP.format(snippet="hosts.conf"),
            "hosts.conf": "hosts {\n    192.0.2.1 www.example.org\n}\n",
        },
    )
    async with running(root / "Corefile", (root / "Corefile").read_text()) as r:
        r.path = root / "Corefile"
        assert answers(await r.query("www.example.org.")) == ["192.0.2.1"]
        # Only the imported key changes.
        configmap_version(
            root,
            "2026_11_28_10_05_00.000000002",
            {
                "Corefile": CONFIGMAP.format(snippet="hosts.conf"),
                "hosts.conf": "hosts {\n    192.0.2.2 www.example.org\n}\n",
            },
        )
        assert await r.check() is True
        assert answers(await r.query("www.example.org.")) == ["192.0.2.2"]
        assert await r.check() is False
        assert len(list(root.glob("..2026_*"))) == 1


# -- SIGUSR1's path, in process ------------------------------------------------------------------


async def test_sigusr1_path_reloads_unchanged_corefiles_and_does_not_count_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture(caplog)
    async with running(tmp_path / "Corefile", HOSTS.format(addr="192.0.2.1")) as r:
        old = r.config
        caplog.clear()
        await r.reloading.reload()  # nothing changed: reloaded anyway
        assert r.config is not old
        digest = r.poller.digest
        assert reload_lines(caplog) == [
            "[INFO] Reloading",
            f"[INFO] plugin/reload: Running configuration SHA512 = {digest}",
            "[INFO] Reloading complete",
        ]
        assert version_series(r) == []  # only the plugin's own checks set it
        r.write("this is { not\n")
        running_config = r.config
        with pytest.raises(
            ServerError, match=r"^starting with listener file descriptors: .*Corefile:1"
        ):
            await r.reloading.reload()
        assert r.config is running_config and failed_total(r) == 0
        assert answers(await r.query("www.example.org.")) == ["192.0.2.1"]
