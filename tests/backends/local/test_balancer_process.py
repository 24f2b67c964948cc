"""The balancer process and the controller's link to it: a real process on loopback, a tiny
asyncio upstream standing in for a replica."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mlkube.backends.local.balancer.protocol import BALANCER_FILE, encode, read_info
from mlkube.backends.local.controller import balancer_link
from mlkube.backends.local.controller.balancer_link import BalancerLink
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Backend
from mlkube.clock import SystemClock

pytestmark = pytest.mark.integration


async def upstream(name: str) -> tuple[asyncio.Server, int]:
    """A keep-alive HTTP/1.1 server that answers every request with its name."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(name) + name.encode()
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def get(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.fixture
async def link(tmp_path: Path) -> AsyncIterator[BalancerLink]:
    first = BalancerLink(tmp_path, SystemClock())
    assert await first.attach() is False  # none ran: started
    yield first
    await first.exit()


async def test_routes_survive_a_new_link_and_counters_come_back(
    link: BalancerLink, tmp_path: Path
) -> None:
    server, replica = await upstream("a")
    port = free_port()
    await link.serve("ml/iris", "127.0.0.1", port)
    link.configure("ml/iris", [Backend("a", replica, 1)], {"a": 1.0}, None, 5.0)
    assert await get(port) == (200, b"a")
    pid = link.pid
    link.detach()  # the controller is gone; the balancer is not
    assert await get(port) == (200, b"a")

    second = BalancerLink(tmp_path, SystemClock())
    assert await second.attach() is True  # re-attached, not a second balancer
    assert second.pid == pid
    await second.serve("ml/iris", "127.0.0.1", port)  # already served there: routes kept
    assert await get(port) == (200, b"a")
    stats = await second.stats()
    assert stats is not None
    assert stats["ml/iris"]["requests"] == 3
    assert stats["ml/iris"]["backends"]["a"][1] == 3  # in flight, requests, errors
    await second.exit()
    assert link.handle is not None and link.handle.poll() is not None  # stopped, reaped
    server.close()


async def test_a_port_in_use_is_refused_with_the_reason(link: BalancerLink) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    with pytest.raises(OSError, match="address already in use"):
        await link.serve("ml/iris", "127.0.0.1", port)
    taken.close()


async def test_a_wrong_token_is_refused(link: BalancerLink, tmp_path: Path) -> None:
    info = read_info(tmp_path)
    assert info is not None
    assert (tmp_path / BALANCER_FILE).stat().st_mode & 0o077 == 0  # the token is not shared
    reader, writer = await asyncio.open_connection("127.0.0.1", info.port)
    writer.write(encode({"id": 1, "op": "hello", "token": "guess"}))
    answer = json.loads(await reader.readline())
    assert answer == {"id": 1, "ok": False, "error": "bad token"}
    assert await reader.read() == b""  # and the connection is closed
    writer.close()


async def test_a_balancer_that_does_not_answer_is_replaced(
    link: BalancerLink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(balancer_link, "ANSWER_TIMEOUT_S", 1.0)
    stuck = link.pid
    assert stuck is not None and link.handle is not None
    os.kill(stuck, signal.SIGSTOP)  # alive, holding its ports, answering nothing
    second = BalancerLink(tmp_path, SystemClock())
    try:
        assert await second.attach() is False  # a new balancer, not the stuck one
        assert second.pid != stuck
        assert link.handle.poll() is not None  # the stuck one was killed (its ports freed)
        port = free_port()
        await second.serve("ml/iris", "127.0.0.1", port)
    finally:
        await second.exit()
