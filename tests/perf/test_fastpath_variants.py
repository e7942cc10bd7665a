"""Replies whose record order is left to chance: offered with other orders, replayed in turn.

A stand-in plugin answers four A records in a random order and offers the reply with
`Offer.with_variants` (as loadbalance can); through the real server, replays must cycle through
the stored orders, each packed exactly as the server packs a reply (same size, same header, same
records), and count like any replay.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

from dnslib import RR, A, DNSRecord

from clusterdns.chain.fastpath import VARIANTS, FastPath, Generations, Offer, Prepared, entry_size
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from tests.dnstest import running_server, udp_exchange
from tests.perf.rig import query, with_id

WHOAMI = ".:0 {\n    bind 127.0.0.1\n    whoami\n}\n"
ADDRESSES = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


class Shuffling:
    """Answers A with four addresses in a random order; offers other orders with the reply."""

    name: ClassVar[str] = "shuffling"

    def __init__(self, gens: Generations, *, fits: bool = True) -> None:
        self.gens = gens
        self.slot = gens.slot("shuffling")
        self.rng = random.Random(7)
        self.calls = 0
        self.hits = 0
        self.fits = fits

    def reply(self, req: Request, count: int = len(ADDRESSES)) -> DNSRecord:
        reply = req.reply(aa=True)
        order = list(ADDRESSES[:count])
        self.rng.shuffle(order)
        for ip in order:
            reply.add_answer(RR(req.qname, 1, rdata=A(ip), ttl=5))
        return reply

    def count_hit(self, proto: str, family: int) -> None:
        self.hits += 1

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls += 1
        w.write(self.reply(req), self.name)

        def variants(n: int) -> Sequence[DNSRecord]:
            # `fits=False`: one variant comes out with a record less (a different size).
            return [self.reply(req, len(ADDRESSES) - (i == 0 and not self.fits)) for i in range(n)]

        offer = Offer(self.slot, self.gens.generation(self.slot)).with_hit(self.count_hit)
        w.offer_fastpath(offer.with_variants(variants))
        return 0


async def test_replays_cycle_through_the_stored_orders() -> None:
    async with running_server(WHOAMI, fastpath=True) as server:
        plugin = Shuffling(server.config.process.generations)
        server.config.blocks[0].head = plugin
        wire = query("pool.example.", "A", edns=1232)
        first = await udp_exchange(server.port(), wire)
        replays = [await udp_exchange(server.port(), with_id(wire, i)) for i in range(VARIANTS)]
        assert plugin.calls == 1 and plugin.hits == VARIANTS
        orders = set()
        for i, reply in enumerate(replays):
            assert reply[:2] == i.to_bytes(2, "big")
            assert len(reply) == len(first)
            msg = DNSRecord.parse(reply)
            assert msg.header.bitmap == DNSRecord.parse(first).header.bitmap
            assert sorted(str(r.rdata) for r in msg.rr) == sorted(ADDRESSES)
            assert [r.rtype for r in msg.ar] == [41]  # the EDNS mirror, as on the full chain
            orders.add(tuple(str(r.rdata) for r in msg.rr))
        assert len(orders) > 1  # the order changes from one replay to the next
        # The cycle comes back to the reply the full chain sent.
        assert first[2:] in {r[2:] for r in replays}


async def test_variants_of_another_size_are_not_stored() -> None:
    async with running_server(WHOAMI, fastpath=True) as server:
        plugin = Shuffling(server.config.process.generations, fits=False)
        server.config.blocks[0].head = plugin
        wire = query("pool.example.", "A")
        await udp_exchange(server.port(), wire)
        await udp_exchange(server.port(), with_id(wire, 9))
        assert plugin.calls == 2 and plugin.hits == 0


def test_tables_are_bounded_in_bytes_too() -> None:
    # Case variants of one name are distinct keys: the byte bound, not the entry count, is
    # what stops a client from filling memory with them.
    gens = Generations()
    slot = gens.slot("z")
    table = FastPath(gens, capacity=1000, max_bytes=10_000)
    reply = b"\x00\x00" + b"r" * 400
    for i in range(100):
        key = b"key-%03d" % i
        table.offer(key, reply, Offer(slot, 0), variants=[reply] * 3)
    assert table.size() <= 10_000
    assert len(table) == table.size() // entry_size(b"key-000", table.get(b"key-099") or _none())
    assert table.get(b"key-000") is None  # the oldest went first
    tcp_before = table.size("tcp")
    table.offer(b"t", reply, Offer(slot, 0), proto="tcp")
    assert table.size("tcp") > tcp_before and table.size("tcp") <= 10_000 // 8
    table.clear()
    assert table.size() == 0 and table.size("tcp") == 0 and len(table) == 0


def _none() -> Prepared:
    raise AssertionError("the newest entry was evicted")
