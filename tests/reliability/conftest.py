"""Transport tests run on both event loops: the CLI serves with uvloop, the other tests use
asyncio's own loop, and their transports differ in buffering and flow control."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

TRANSPORT_MODULES = ("test_tcp_rows.py", "test_overload.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    if item.path.name in TRANSPORT_MODULES:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
