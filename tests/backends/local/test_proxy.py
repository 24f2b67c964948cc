"""The load balancer in process, in front of tiny asyncio upstreams on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Backend, RetryBudget, Router, serve
from mlkube.clock import SystemClock

clock_sleep = SystemClock().sleep_blocking

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
        router.configure([], {})  # closes the pooled replica connections


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
    router.verdict_wait_s = 0.1  # no controller here to say why "bad" closed
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


async def counting_upstream(received: list[bytes], *, answer: bool) -> tuple[asyncio.Server, int]:
    """Reads one request head per connection and records it; answers 200, or dies (closes
    without a byte, as a replica killed by the request does)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            received.append(await reader.readuntil(b"\r\n\r\n"))
            if answer:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("caused_by_request", "statuses", "deliveries"),
    [(True, [502], 1), (False, [200], 2), (None, [502], 1)],
    ids=["oom-killed", "killed-from-outside", "no-word-from-the-controller"],
)
async def test_a_post_its_replica_died_reading_is_retried_only_when_the_death_was_not_its_own(
    caused_by_request, statuses, deliveries
):
    # The request kills the replica that reads it (OOM). Retrying it elsewhere would kill
    # that one too; so a POST that was sent waits for the controller's word on why the
    # replica died: OOMKilled or a crash → 502, killed from outside (SIGKILL) → retried.
    received: list[bytes] = []
    first, p1 = await counting_upstream(received, answer=False)
    second, p2 = await counting_upstream(received, answer=caused_by_request is False)
    router = Router("t", hold_s=1)
    router.verdict_wait_s = 0.3
    backends = [Backend("1", p1, 1), Backend("2", p2, 1)]
    router.configure(backends, {"1": 1, "2": 1})
    async with balancer(router) as port:
        pending = asyncio.create_task(request(port, b"poison"))
        for _ in range(500):
            if router.awaiting_verdict or pending.done():
                break
            await asyncio.sleep(0.01)
        if caused_by_request is not None:
            (name,) = router.awaiting_verdict
            router.replica_exited(name, caused_by_request=caused_by_request)
        status, body = await asyncio.wait_for(pending, 5)
    assert [status] == statuses
    if status == 502:
        assert json.loads(body) == {"error": "the replica closed the connection before answering"}
    assert len(received) == deliveries
    assert all(b.in_flight == 0 for b in backends)
    first.close()
    second.close()


async def test_a_request_nothing_was_sent_of_is_retried_within_the_budget():
    dead = [free_port() for _ in range(3)]  # nothing listens: connect refused, nothing sent
    router = Router("t", hold_s=0.1)
    router.budget = RetryBudget(ratio=0.0, reserve_per_s=0.0, cap=1.0)
    backends = [Backend(str(p), p, 1) for p in dead]
    router.configure(backends, {str(p): 1 for p in dead})
    async with balancer(router) as port:
        status, body = await request(port)
    assert status == 502
    assert json.loads(body) == {"error": "no replica answered"}
    assert router.stats.retries == 1, "one retry was in the budget, the second was not"
    assert all(b.in_flight == 0 for b in backends)


@contextlib.contextmanager
def stopped_http_server(tmp_path):
    """A real HTTP server process, SIGSTOPped: the kernel still accepts its connections."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            clock_sleep(0.05)
        os.kill(child.pid, signal.SIGSTOP)
        yield port
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait()


async def test_a_stopped_replica_gets_504_and_is_ejected_so_later_requests_go_elsewhere(
    tmp_path,
):
    a, pa = await upstream("a")
    with stopped_http_server(tmp_path) as stopped_port:
        router = Router("t", hold_s=1)
        router.upstream_timeout_s = 0.3
        backends = {"stopped": Backend("stopped", stopped_port, 1), "a": Backend("a", pa, 1)}
        router.configure(list(backends.values()), {"stopped": 1, "a": 1})
        async with balancer(router) as port:
            answers = []
            for _ in range(4):  # a hang here fails the test through wait_for
                answers.append(await asyncio.wait_for(request(port), 10))
            get_status, _ = await asyncio.wait_for(request(port, method=b"GET"), 10)
    statuses = [status for status, _ in answers]
    assert statuses.count(504) == 1, statuses
    after = statuses[statuses.index(504) + 1 :]
    assert after and set(after) == {200}, "the stopped replica is skipped once it timed out"
    assert json.loads(answers[statuses.index(504)][1]) == {
        "error": "the replica did not answer within 0.3 s"
    }
    assert router.stats.ejections >= 1
    assert get_status == 200
    assert backends["stopped"].in_flight == 0
    a.close()


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def sink_upstream(download_bytes: int) -> tuple[asyncio.Server, int]:
    """POST: reads the body and answers how many bytes came. GET: sends ``download_bytes``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % download_bytes)
                    block = b"d" * (1 << 20)
                    for _ in range(download_bytes >> 20):
                        writer.write(block)
                        await writer.drain()
                    continue
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                seen = 0
                while seen < length:
                    seen += len(await reader.read(min(1 << 20, length - seen)))
                answer = b"%d" % seen
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.slow
async def test_a_400_mb_upload_and_download_stream_through_in_bounded_memory():
    size = 400 * (1 << 20)
    sink, sink_port = await sink_upstream(download_bytes=size)
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("balancer_child.py")),
        str(port),
        str(sink_port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"ready"
        assert (await request(port, b"warm-up"))[0] == 200
        idle_peak = peak_rss_bytes(child.pid)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"u" * (1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        assert head.startswith(b"HTTP/1.1 200")
        assert int(await reader.readexactly(length)) == size
        upload_peak = peak_rss_bytes(child.pid)

        # A client that stops reading: the balancer stops reading the replica, not buffers.
        writer.write(b"GET /down HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        await asyncio.sleep(1.0)
        got = 0
        while got < size:
            got += len(await asyncio.wait_for(reader.read(1 << 20), 60))
        download_peak = peak_rss_bytes(child.pid)
        writer.close()
    finally:
        child.kill()
        await child.wait()
        sink.close()
    mib = 1 << 20
    assert upload_peak - idle_peak < 32 * mib, (idle_peak // mib, upload_peak // mib)
    assert download_peak - idle_peak < 32 * mib, (idle_peak // mib, download_peak // mib)


async def test_an_upload_slower_than_the_upstream_timeout_is_not_cut_while_it_flows():
    # The upstream timeout measures the replica's silence, not the length of the exchange.
    a, pa = await upstream("a")
    router = Router("t", hold_s=1)
    router.upstream_timeout_s = 0.2
    router.configure([Backend("a", pa, 1)], {"a": 1})
    async with balancer(router) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for digit in b"0123456789":
            writer.write(bytes([digit]))
            await writer.drain()
            await asyncio.sleep(0.06)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readexactly(12), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"a:0123456789"
    assert router.stats.timeouts == 0
    a.close()
