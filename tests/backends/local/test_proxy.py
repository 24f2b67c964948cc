"""The load balancer in process, in front of tiny asyncio upstreams on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Backend, Router, serve

pytestmark = pytest.mark.integration


async def upstream(name: str, *, behaviour: str = "ok") -> tuple[asyncio.Server, int]:
    """An HTTP/1.1 keep-alive server answering with its own name; or misbehaving."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                if behaviour == "close-after-bytes":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    await writer.drain()
                    writer.close()
                    return
                if behaviour == "close-before-bytes":
                    writer.close()
                    return
                payload = name.encode() + b":" + body
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def request(
    port: int, body: bytes = b"x", headers: bytes = b"", method: bytes = b"POST"
) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"%s /p HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (method, headers, len(body), body)
    )
    data = await reader.read()
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return (int(head.split(b" ")[1]) if head else 0), rest


@contextlib.asynccontextmanager
async def balancer(router: Router):
    port = free_port()
    server = await serve(router, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()


async def test_weights_spread_requests_and_bodies_pass_through():
    a, pa = await upstream("a")
    b, pb = await upstream("b")
    router = Router("t", hold_s=1)
    router.configure([Backend("a", pa, 1), Backend("b", pb, 2)], {"a": 0.25, "b": 0.75})
    async with balancer(router) as port:
        answers = [await request(port, b"hello") for _ in range(40)]
    assert {status for status, _ in answers} == {200}
    assert Counter(body.split(b":")[0] for _, body in answers) == {b"a": 10, b"b": 30}
    assert all(body.endswith(b":hello") for _, body in answers)
    a.close()
    b.close()


async def test_keep_alive_client_with_pipelined_requests_gets_every_answer_in_order():
    a, pa = await upstream("a")
    router = Router("t", hold_s=1)
    router.configure([Backend("a", pa, 1)], {"a": 1.0})
    async with balancer(router) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"".join(
                b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % i for i in range(3)
            )
        )
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            data += await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
    assert data.index(b"a:0") < data.index(b"a:1") < data.index(b"a:2")
    a.close()


async def test_refused_connection_is_retried_on_another_replica():
    a, pa = await upstream("a")
    dead = free_port()  # nothing listens here
    router = Router("t", hold_s=1)
    router.configure([Backend("dead", dead, 1), Backend("a", pa, 1)], {"dead": 1, "a": 1})
    async with balancer(router) as port:
        answers = [await request(port) for _ in range(10)]
    assert [s for s, _ in answers] == [200] * 10
    assert router.stats.retries >= 1
    a.close()


async def test_connection_closed_before_any_byte_retries_a_get_but_never_a_post():
    # A replica that dies reading a request may have died of it (a query of death): a POST
    # it was sent is answered 502, not sent to the next replica; a GET is safe to retry.
    bad, pbad = await upstream("bad", behaviour="close-before-bytes")
    a, pa = await upstream("a")
    router = Router("t", hold_s=1)
    router.configure([Backend("bad", pbad, 1), Backend("a", pa, 1)], {"bad": 1, "a": 1})
    async with balancer(router) as port:
        gets = [await request(port, method=b"GET") for _ in range(4)]
        router.backends["bad"].ejected_until = 0.0
        router.backends["bad"].failures = 0
        posts = [await request(port) for _ in range(4)]
    assert [s for s, _ in gets] == [200] * 4
    assert sorted(s for s, _ in posts) == [200, 200, 200, 502]
    assert router.stats.ejections == 2, "the replica that closed is skipped afterwards"
    bad.close()
    a.close()


async def test_a_response_that_started_is_never_retried():
    bad, pbad = await upstream("bad", behaviour="close-after-bytes")
    router = Router("t", hold_s=1)
    router.configure([Backend("bad", pbad, 1)], {"bad": 1})
    async with balancer(router) as port:
        status, body = await request(port)
    assert status == 200
    assert body == b"partial", "the client sees the broken answer; nothing is sent twice"
    assert router.stats.retries == 0
    bad.close()


async def test_no_ready_replica_holds_then_answers_503_with_retry_after():
    router = Router("t", hold_s=0.2)
    async with balancer(router) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        writer.close()
    assert data.startswith(b"HTTP/1.1 503")
    assert b"retry-after: 1" in data.lower()
    assert data.endswith(b'{"error":"no ready replica"}')


async def test_a_held_request_is_served_once_a_replica_becomes_ready():
    a, pa = await upstream("a")
    demand = []
    router = Router("t", hold_s=5, on_demand=lambda: demand.append(1))
    async with balancer(router) as port:
        pending = asyncio.create_task(request(port))
        await asyncio.sleep(0.1)
        assert router.holding == 1
        router.configure([Backend("a", pa, 1)], {"a": 1})
        status, _ = await asyncio.wait_for(pending, 5)
    assert status == 200
    assert demand == [1]
    a.close()


async def test_header_rule_sends_matching_requests_to_its_revision():
    a, pa = await upstream("a")
    b, pb = await upstream("b")
    router = Router("t", hold_s=1)
    router.configure(
        [Backend("a", pa, 1), Backend("b", pb, 2)], {"a": 1.0, "b": 1.0}, ("X-Variant", "b", {"b"})
    )
    async with balancer(router) as port:
        plain = [await request(port) for _ in range(4)]
        tagged = [await request(port, headers=b"X-Variant: b\r\n") for _ in range(4)]
    assert {body.split(b":")[0] for _, body in plain} == {b"a"}
    assert {body.split(b":")[0] for _, body in tagged} == {b"b"}
    a.close()
    b.close()


async def test_header_rule_reaches_replicas_that_get_no_weighted_traffic():
    # An A/B test by header gives B no share of other requests (weight 0, so absent): the
    # header route must still reach it (it answered 503 "no ready replica" before).
    a, pa = await upstream("a")
    b, pb = await upstream("b")
    router = Router("t", hold_s=1)
    router.configure(
        [Backend("a", pa, 1), Backend("b", pb, 2)], {"a": 1.0}, ("x-variant", "b", {"b"})
    )
    async with balancer(router) as port:
        plain = [await request(port) for _ in range(4)]
        tagged = [await request(port, headers=b"X-Variant: b\r\n") for _ in range(4)]
    assert {body.split(b":")[0] for _, body in plain} == {b"a"}
    assert [status for status, _ in tagged] == [200] * 4
    assert {body.split(b":")[0] for _, body in tagged} == {b"b"}
    a.close()
    b.close()


async def test_draining_replica_gets_no_new_requests():
    a, pa = await upstream("a")
    b, pb = await upstream("b")
    router = Router("t", hold_s=1)
    router.configure([Backend("a", pa, 1), Backend("b", pb, 1)], {"a": 1, "b": 1})
    router.drain("a")
    async with balancer(router) as port:
        answers = [await request(port) for _ in range(6)]
    assert {body.split(b":")[0] for _, body in answers} == {b"b"}
    a.close()
    b.close()
