"""The balancer's L4 pass-through (gRPC locally): whole connections, round robin, a refusing
backend skipped, no backend: the connection is closed. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket

from mlkube.backends.local.balancer.tcp import TcpPassthrough

HANDLERS: set[asyncio.Task[None]] = set()


async def _echo_server(tag: bytes) -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        HANDLERS.add(task)
        try:
            while data := await reader.read(1024):
                writer.write(tag + data)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            HANDLERS.discard(task)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _all_closed(listener: TcpPassthrough, *servers: asyncio.Server) -> None:
    """Every socket of the test closed before its loop ends (no unclosed-transport warning
    surfacing in a later test)."""
    listener.close()
    await listener.wait_closed()
    for server in servers:
        server.close()
    await asyncio.wait_for(asyncio.gather(*HANDLERS, return_exceptions=True), 10)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _exchange(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(message)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1024), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_connections_go_round_robin_and_skip_a_refusing_backend():
    a, port_a = await _echo_server(b"a:")
    b, port_b = await _echo_server(b"b:")
    listener = TcpPassthrough("test")
    await listener.listen("127.0.0.1", 0)
    assert listener.port is not None
    try:
        # No backend yet: the connection is closed at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await asyncio.wait_for(reader.read(1024), 10) == b""
        writer.close()
        await writer.wait_closed()
        listener.set_backends([port_a, port_b])
        answers = [await _exchange(listener.port, b"hi") for _ in range(4)]
        assert sorted(answers) == [b"a:hi", b"a:hi", b"b:hi", b"b:hi"]
        assert answers[0] != answers[1]
        listener.set_backends([_dead_port(), port_b])
        assert {await _exchange(listener.port, b"x") for _ in range(3)} == {b"b:x"}
        # A connection keeps its backend for every exchange on it.
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        replies = []
        for _ in range(3):
            writer.write(b"m")
            await writer.drain()
            replies.append(await asyncio.wait_for(reader.read(1024), 10))
        writer.close()
        await writer.wait_closed()
        assert len(set(replies)) == 1
    finally:
        await _all_closed(listener, a, b)
