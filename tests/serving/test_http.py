"""The HTTP layer on its own: a real socket, a trivial handler."""

import asyncio
from collections.abc import Callable

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


async def _serve_slowly(delay_s: float) -> tuple[ServerState, asyncio.Server, int]:
    """A server whose answers come ``delay_s`` after each request (a model predicting)."""
    loop = asyncio.get_running_loop()

    def handler(request: object, respond: Callable[[Response], None]) -> None:
        loop.call_later(delay_s, respond, Response(200, b"ok"))

    state = ServerState(handler, max_body_bytes=1024, error_response=error)
    server = await start_server(state, host="127.0.0.1", port=0)
    return state, server, server.sockets[0].getsockname()[1]


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the server exposes no event for it
            await asyncio.sleep(0.01)


async def test_a_client_that_half_closes_gets_every_answer_then_the_server_closes():
    state, server, port = await _serve_slowly(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write_eof()  # `nc -N`: the requests are all sent, the answers still to come
    answers = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closes
    assert answers.count(b"HTTP/1.1 200") == 2
    await _until(lambda: not state.connections)
    assert state.in_flight == 0
    writer.close()
    server.close()


async def test_clients_that_leave_with_requests_outstanding_leave_no_connection_behind():
    # What a load generator does when its run ends: close every socket, answers or not.
    state, server, port = await _serve_slowly(0.05)
    for _ in range(5):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await _until(lambda: state.in_flight > 0)
        writer.close()
    # Each answer is written when it is ready, and each connection then closes: none is
    # left counted as a client that may still send (the batcher reads that count).
    await _until(lambda: not state.connections and state.in_flight == 0)
    server.close()


async def test_connections_quiet_for_a_while_stop_counting_as_clients_about_to_send():
    state, server, port = await _serve_slowly(0.0)
    state.quiet_after_s = 0.1
    sweeper = asyncio.create_task(close_idle_connections(state, every_s=0.02))
    pooled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    await _until(lambda: len(state.connections) == 3)
    assert state.may_send() == 3  # just opened: each may send at any moment
    await _until(lambda: state.quiet == 3)  # a proxy's pool, idle
    assert state.may_send() == 0
    # One of them sends again: it is in flight, then answered and counted as a sender again.
    reader, writer = pooled[0]
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    assert state.quiet == 2 and state.may_send() == 1
    # Closing quiet connections takes them out of the count too.
    for _, quiet_writer in pooled[1:]:
        quiet_writer.close()
    await _until(lambda: len(state.connections) == 1)
    assert state.quiet in (0, 1) and state.may_send() == 1 - state.quiet
    sweeper.cancel()
    writer.close()
    server.close()
