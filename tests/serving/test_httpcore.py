"""The shared HTTP/1.1 core, through both of its fronts: a replica's server, and the load
balancer in front of one. Real sockets on loopback; every case runs against both."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import orjson
import pytest

from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Backend, Router, serve, stop
from mlkube.serving.errors import error_response
from mlkube.serving.http import (
    Request,
    Respond,
    Response,
    ServerState,
    close_idle_connections,
    start_server,
)
from mlkube.serving.httpcore.limits import HttpLimits

pytestmark = pytest.mark.integration

LIMITS = HttpLimits(
    max_url_bytes=1024,
    max_header_bytes=4096,
    max_body_bytes=64 * 1024,
    header_timeout_s=0.3,
    body_timeout_s=0.3,
    idle_timeout_s=5.0,
    linger_idle_s=1.0,
)
FRONTS = ["replica", "balancer"]


def echo(request: Request, respond: Respond) -> Response:
    """Answers what it read, so a test sees exactly what reached the handler."""
    body = {
        "method": request.method,
        "path": request.path,
        "bytes": len(request.body),
        "request_id": request.headers.get("x-request-id"),
        "headers": sorted(request.headers),
    }
    response = Response(200, orjson.dumps(body))
    if "x-request-id" in request.headers:
        response.headers.append(("x-request-id", request.headers["x-request-id"]))
    return response


@contextlib.asynccontextmanager
async def replica(limits: HttpLimits) -> AsyncIterator[int]:
    state = ServerState(
        echo, max_body_bytes=limits.max_body_bytes, error_response=error_response, limits=limits
    )
    server = await start_server(state, host="127.0.0.1", port=0)
    sweeper = asyncio.create_task(close_idle_connections(state))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        sweeper.cancel()
        server.close()
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()


@contextlib.asynccontextmanager
async def front(kind: str, limits: HttpLimits = LIMITS) -> AsyncIterator[int]:
    """The port a client talks to: a replica, or the balancer before a replica."""
    async with replica(limits) as replica_port:
        if kind == "replica":
            yield replica_port
            return
        router = Router("t", hold_s=1)
        router.limits = limits
        router.configure([Backend("r", replica_port, 1)], {"r": 1.0})
        port = free_port()
        server = await serve(router, "127.0.0.1", port)
        try:
            yield port
        finally:
            await stop(server, 5)  # no transport left for the loop's end to warn about
            router.configure([], {})  # closes the pooled replica connections


async def exchange(port: int, data: bytes, *, timeout_s: float = 5.0) -> bytes:
    """Send ``data``, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()  # no transport left for the loop's end to warn about


def statuses(data: bytes) -> list[int]:
    """The status of each response in ``data`` (responses with Content-Length)."""
    found = []
    while data.startswith(b"HTTP/1.1 "):
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        found.append(int(head[9:12]))
        data = rest[length:]
    return found


def error_of(data: bytes) -> str:
    body = data.split(b"\r\n\r\n", 1)[1]
    parsed = json.loads(body)
    assert set(parsed) == {"error"}, "one error shape: {'error': '<message>'}"
    return str(parsed["error"])


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


@pytest.mark.parametrize("kind", FRONTS)
async def test_an_endless_url_gets_414_while_it_is_still_being_sent(kind):
    async with front(kind) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /")
        sent = 0
        answer = b""
        while not answer and sent < 10 * 1024 * 1024:  # the old server read all of it
            writer.write(b"a" * 4096)
            sent += 4096
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), 0.01)
        answer += await asyncio.wait_for(reader.read(), 5)  # the rest, up to the server's FIN
        writer.close()
    assert statuses(answer) == [414]
    assert sent <= LIMITS.max_url_bytes + 256 * 1024, "answered once the limit was crossed"
    assert "URL longer than 1024 bytes" in error_of(answer)


@pytest.mark.parametrize("kind", FRONTS)
async def test_an_endless_header_gets_431_while_it_is_still_being_sent(kind):
    async with front(kind) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
        sent = 0
        answer = b""
        while not answer and sent < 10 * 1024 * 1024:
            writer.write(b"v" * 4096)
            sent += 4096
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), 0.01)
        answer += await asyncio.wait_for(reader.read(), 5)  # the rest, up to the server's FIN
        writer.close()
    assert statuses(answer) == [431]
    assert sent <= LIMITS.max_header_bytes + 256 * 1024


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_huge_content_length_without_a_body_gets_413_at_once(kind):
    async with front(kind) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in head


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_chunked_body_gets_413_once_it_crosses_the_limit(kind):
    async with front(kind) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer = b""
        sent = 0
        while not answer and sent < 10 * 1024 * 1024:
            writer.write(b"1000\r\n" + b"z" * 4096 + b"\r\n")
            sent += 4096
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), 0.01)
        answer += await asyncio.wait_for(reader.read(), 5)  # the rest, up to the server's FIN
        writer.close()
    assert statuses(answer) == [413]
    assert sent <= LIMITS.max_body_bytes + 1024 * 1024


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_client_that_sends_its_whole_30_mb_body_first_reads_the_413(kind):
    # urllib (like requests) writes the whole body before reading: without a lingering
    # close it gets a connection reset instead of the answer.
    limits = dataclasses.replace(LIMITS, max_body_bytes=1024 * 1024)

    def upload(port: int) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/m:predict", data=b"0" * (30 * 1024 * 1024)
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    async with front(kind, limits) as port:
        status, body = await asyncio.to_thread(upload, port)
    assert status == 413
    assert json.loads(body) == {"error": "request body larger than the limit of 1048576 bytes"}


@pytest.mark.parametrize("kind", FRONTS)
async def test_headers_that_never_end_get_408(kind):
    async with front(kind) as port:
        # slowloris: a header every now and then, never the blank line
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for _ in range(200):
            writer.write(b"X-A: b\r\n")
            with contextlib.suppress(TimeoutError):
                answer += await asyncio.wait_for(reader.read(4096), 0.05)
            if answer:
                break
        answer += await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert statuses(answer) == [408]
    assert "request headers not received within 0.3 s" in error_of(answer)


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_body_that_stalls_gets_408(kind):
    async with front(kind) as port:
        answer = await exchange(
            port, b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"
        )
    assert statuses(answer) == [408]
    assert "request body stalled" in error_of(answer)


@pytest.mark.parametrize("kind", FRONTS)
async def test_http11_without_host_is_400_and_http10_without_host_is_served(kind):
    async with front(kind) as port:
        missing = await exchange(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        twice = await exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        old = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses(missing) == [400]
    assert "Host header" in error_of(missing)
    assert statuses(twice) == [400]
    assert statuses(old) == [200]


@pytest.mark.parametrize("kind", FRONTS)
async def test_an_unknown_transfer_coding_is_501_not_read_as_the_body(kind):
    async with front(kind) as port:
        answer = await exchange(
            port,
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
        )
    assert statuses(answer) == [501]
    assert "transfer coding 'gzip, chunked' is not supported" in error_of(answer)


@pytest.mark.parametrize("kind", FRONTS)
async def test_an_upgrade_request_is_answered_once_as_plain_http(kind):
    async with front(kind) as port:
        answer = await exchange(
            port,
            b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"\x81\x85not http at all",
        )
    assert statuses(answer) == [200], "one answer, then the connection closed"
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["path"] == "/up"


@pytest.mark.parametrize("kind", FRONTS)
async def test_head_on_a_keep_alive_connection_does_not_hang_the_next_request(kind):
    async with front(kind) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        after = await read_response(reader)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: " in head, "HEAD tells the length it would send"
    assert after.startswith(b"HTTP/1.1 200")
    assert json.loads(after.split(b"\r\n\r\n", 1)[1])["path"] == "/b"


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_valid_pipelined_request_then_garbage_gets_its_answer_then_400(kind):
    async with front(kind) as port:
        answer = await exchange(
            port, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nthis is not http\r\n\r\n"
        )
    assert statuses(answer) == [200, 400]
    assert b'"path":"/ok"' in answer
    assert error_of(b"\r\n\r\n".join(answer.split(b"\r\n\r\n")[-2:])).startswith("malformed")


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_utf8_request_id_arrives_as_utf8_and_comes_back_as_the_same_bytes(kind):
    request_id = "café-☕-1".encode()
    async with front(kind) as port:
        answer = await exchange(
            port,
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nConnection: close\r\n\r\n"
            % request_id,
        )
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["request_id"] == "café-☕-1"
    assert b"x-request-id: " + request_id + b"\r\n" in answer


@pytest.mark.parametrize("kind", FRONTS)
async def test_expect_100_continue_gets_100_then_the_answer(kind):
    async with front(kind) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"hello")
        final = await read_response(reader)
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert json.loads(final.split(b"\r\n\r\n", 1)[1])["bytes"] == 5


@pytest.mark.parametrize("kind", FRONTS)
async def test_chunked_requests_reach_the_handler_whole(kind):
    async with front(kind) as port:
        answer = await exchange(
            port,
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close"
            b"\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        )
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["bytes"] == 7
