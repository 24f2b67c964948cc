"""The probe client: whatever a replica answers (or not), a status or 0, never an exception."""

from __future__ import annotations

import asyncio

import pytest

from mlkube.backends.local.controller.probe import http_get


async def _server(answer: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", (200, b"ok"), id="ok"),
        pytest.param(b"HTTP/1.1 503 X\r\n\r\n", (503, b""), id="unready"),
        pytest.param(b"", (0, b""), id="closed-without-a-status-line"),
        pytest.param(b"garbage\r\n\r\n", (0, b""), id="no-status-code"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            (200, b"ok"),
            id="chunked",
        ),
    ],
)
async def test_http_get(answer, expected):
    server, port = await _server(answer)
    try:
        assert await http_get(port, "/v2/health/ready", timeout_s=2) == expected
    finally:
        server.close()
