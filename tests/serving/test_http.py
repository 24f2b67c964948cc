"""The HTTP layer on its own: a real socket, a trivial handler."""

import asyncio

from mlkube.serving.http import (
    Response,
    ServerState,
    close_idle_connections,
    start_server,
)


def error(status: int, message: str) -> Response:
    return Response(status, message.encode())


async def test_idle_connections_are_closed_and_busy_ones_kept():
    state = ServerState(
        lambda request, respond: Response(200, b"ok"), max_body_bytes=1024, error_response=error
    )
    server = await start_server(state, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    sweeper = asyncio.create_task(close_idle_connections(state, idle_timeout_s=0.2, every_s=0.05))
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(6):  # keep one connection talking past the idle timeout
        busy_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await busy_writer.drain()
        assert (await busy_reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.08)
    assert await asyncio.wait_for(idle_reader.read(), 1) == b""  # closed by the server
    assert not busy_writer.is_closing()
    sweeper.cancel()
    busy_writer.close()
    idle_writer.close()
    server.close()
