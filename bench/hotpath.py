"""In-process cost of one query on each path, and a profile of the full chain.

The server is set up from the kubeadm Corefile (new cache form) and the reference cluster, then
driven without sockets: the full-chain path is `Responder.handle` (decode, route, every plugin,
mirror EDNS, pack), the fast path is `UDPProtocol.datagram_received` on a stored reply with a
transport whose `sendto` does nothing. The figures are Python CPU per query, without the kernel's
share (recvfrom/sendto, about 2-3 µs per query on loopback), so they sit below the µs/query of
`bench/run.py`, which is measured from /proc on the real server under load.

    .venv/bin/python bench/hotpath.py                  # the table
    .venv/bin/python bench/hotpath.py --profile FILE   # also a cProfile of the full chain (pstats)
    .venv/bin/python bench/hotpath.py --pyinstrument   # a pyinstrument tree (pip install it)

Every figure is the best of --repeat runs of --n queries.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dnslib import EDNS0, DNSRecord  # noqa: E402

from clusterdns.chain.build import Config, build  # noqa: E402
from clusterdns.chain.fastpath import Generations  # noqa: E402
from clusterdns.chain.order import DIRECTIVES  # noqa: E402
from clusterdns.chain.setup import ProcessContext  # noqa: E402
from clusterdns.corefile import parse  # noqa: E402
from clusterdns.metrics import Metrics  # noqa: E402
from clusterdns.plugins import SETUP  # noqa: E402
from clusterdns.server.lifecycle import Server  # noqa: E402
from clusterdns.server.responder import Responder  # noqa: E402
from clusterdns.server.udp import UDPProtocol  # noqa: E402
from clusterdns.webserver import HTTPRegistry  # noqa: E402

REFERENCE: Final = ROOT / "tests" / "fixtures" / "k8s" / "reference.yaml"
REMOTE: Final = ("127.0.0.1", 40000)
LOCAL: Final = ("127.0.0.1", 53)

COREFILE: Final = """.:0 {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:0
    ready 127.0.0.1:0
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        from_yaml {cluster}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus 127.0.0.1:0
    forward . 127.0.0.1:9 {{
        max_concurrent 1000
    }}
    {cache}
    loadbalance
}}
"""
CACHE_NEW: Final = (
    "cache 30 {\n        disable success cluster.local\n        disable denial cluster.local\n    }"
)


def wire(qname: str, qtype: str = "A", edns: int | None = None, do: bool = False) -> bytes:
    """A query as a stub resolver sends it (RD set)."""
    q = DNSRecord.question(qname, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else ""))
    return bytes(q.pack())


QUERIES: Final = {
    "ClusterIP A": wire("api.prod.svc.cluster.local."),
    "ClusterIP A, EDNS": wire("api.prod.svc.cluster.local.", edns=1232),
    "NXDOMAIN (search path)": wire("example.com.prod.svc.cluster.local."),
    "SRV named port": wire("_https._tcp.kubernetes.default.svc.cluster.local.", "SRV"),
    "headless A (3 endpoints)": wire("web.prod.svc.cluster.local."),
    "PTR": wire("1.0.96.10.in-addr.arpa.", "PTR"),
}


class NullTransport:
    """A datagram transport that sends nowhere."""

    def sendto(self, data: bytes, addr: object = None) -> None:
        """Drop the datagram."""

    def get_write_buffer_size(self) -> int:
        """Nothing is ever queued."""
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        """The socket address of a listener on 127.0.0.1:53."""
        return LOCAL if name == "sockname" else default


def configure(cache: str) -> Config:
    """Set the Corefile up as the server does (nothing opened yet)."""
    text = COREFILE.format(cluster=REFERENCE, cache=cache)
    process = ProcessContext(metrics=Metrics(), http=HTTPRegistry(), generations=Generations())
    return build(parse(text, "Corefile", DIRECTIVES), specs=SETUP, dns_port=53, process=process)


def best_of(repeat: int, run: Callable[[], float]) -> float:
    """The smallest of `repeat` measurements."""
    return min(run() for _ in range(repeat))


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """(query, full-chain µs, fast-path µs) per query kind."""
    n: int = args.n
    config = configure(CACHE_NEW)
    config.blocks[0].fastpath = args.force_fastpath or config.blocks[0].fastpath
    server = Server(config, quiet=True)
    await server.start()
    try:
        responder: Responder = next(iter(server.listeners.values())).responder
        protocol = UDPProtocol(responder, config.process.metrics)
        protocol.connection_made(NullTransport())  # type: ignore[arg-type]
        sent: list[bytes] = []
        rows: list[tuple[str, float, float]] = []
        for label, data in QUERIES.items():

            async def full(data: bytes = data) -> float:
                responder.fastpath.clear()
                block = config.blocks[0]
                stored, block.fastpath = block.fastpath, False
                start = time.process_time()
                for _ in range(n):
                    await responder.handle(data, "udp", REMOTE, LOCAL, sent.append)
                spent = time.process_time() - start
                block.fastpath = stored
                sent.clear()
                return spent / n * 1e6

            full_us = min([await full() for _ in range(args.repeat)])
            responder.fastpath.clear()
            await responder.handle(data, "udp", REMOTE, LOCAL, sent.append)
            fast_us = float("nan")
            if len(responder.fastpath):

                def fast(data: bytes = data) -> float:
                    receive = protocol.datagram_received
                    start = time.process_time()
                    for _ in range(n):
                        receive(data, REMOTE)
                    return (time.process_time() - start) / n * 1e6

                fast_us = best_of(args.repeat, fast)
            rows.append((label, full_us, fast_us))
        if args.profile or args.pyinstrument:
            await profile(args, responder, config)
        return rows
    finally:
        await server.stop(graceful=False)


async def profile(args: argparse.Namespace, responder: Responder, config: Config) -> None:
    """Profile the full chain on the query mix (fast path off)."""
    config.blocks[0].fastpath = False
    responder.fastpath.clear()
    mix = list(QUERIES.values())
    sent: list[bytes] = []

    async def work() -> None:
        for _ in range(args.n // len(mix) * 4):
            for data in mix:
                await responder.handle(data, "udp", REMOTE, LOCAL, sent.append)
            sent.clear()

    if args.pyinstrument:
        from pyinstrument import Profiler  # type: ignore[import-not-found, unused-ignore]

        profiler: Any = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        await work()
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        await work()
        prof.disable()
        prof.dump_stats(args.profile)
        print(f"cProfile written to {args.profile} (python -m pstats {args.profile})")


def main(argv: list[str] | None = None) -> int:
    """Print the per-path table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="queries per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements; the best is kept")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the full chain")
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument tree")
    parser.add_argument(
        "--force-fastpath",
        action="store_true",
        help="store offers even if a plugin of the block is not declared replay-safe",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory():
        rows = run(measure(args))
    print(f"{'query':<28} {'full chain µs':>14} {'fast path µs':>13}")
    for label, full_us, fast_us in rows:
        fast = "not stored" if fast_us != fast_us else f"{fast_us:.2f}"
        print(f"{label:<28} {full_us:>14.1f} {fast:>13}")
    return 0


def run(coro: Awaitable[list[tuple[str, float, float]]]) -> list[tuple[str, float, float]]:
    """Run on uvloop, as the CLI does."""
    import uvloop

    result: list[tuple[str, float, float]] = uvloop.run(coro)  # type: ignore[arg-type]
    return result


if __name__ == "__main__":
    raise SystemExit(main())
