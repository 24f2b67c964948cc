"""Tiny async HTTP GET against a replica on loopback: readiness probes and /metrics scrapes."""

from __future__ import annotations

import asyncio

MAX_RESPONSE_BYTES = 8 * 2**20  # a /metrics page is a few kB; anything bigger is cut


async def http_get(port: int, path: str, *, timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` on 127.0.0.1:port; status 0 when it failed."""
    try:
        return await asyncio.wait_for(_get(port, path), timeout_s)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return 0, b""


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await reader.read(MAX_RESPONSE_BYTES)
        while len(data) < MAX_RESPONSE_BYTES:
            more = await reader.read(MAX_RESPONSE_BYTES - len(data))
            if not more:
                break
            data += more
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        # Closed without a status line (a replica stopping mid-probe): a failed probe.
        return 0, b""
    status = int(parts[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)
