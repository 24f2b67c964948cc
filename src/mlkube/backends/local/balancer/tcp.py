"""An L4 pass-through listener: each TCP connection goes whole to one ready replica.

gRPC is HTTP/2, which the HTTP/1.1 proxy (``proxy.py``) does not speak; what a Kubernetes
Service (kube-proxy) does for it is to balance connections, not requests: each new connection
goes to a ready endpoint and stays there. This does the same locally, round robin over the
replicas that are ready and not draining, so a gRPC client sees the same behaviour on a laptop
as on a cluster (one client connection: one replica; several connections or reconnects spread
out). A replica that refuses the connection is skipped for the next; with none left the
connection is closed (the client's UNAVAILABLE). Connections already open stay with their
replica when the ready set changes: a draining replica's gRPC server ends them itself (GOAWAY).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
_CHUNK = 256 * 1024


class TcpPassthrough:
    """One listening port, forwarding whole connections to backend ports on 127.0.0.1."""

    def __init__(self, key: str, *, backend_host: str = "127.0.0.1") -> None:
        self.key = key
        self.backend_host = backend_host
        self.ports: tuple[int, ...] = ()
        """The ready replicas' gRPC ports, in a stable order."""
        self.connections = 0
        """Connections accepted so far (status and tests read it)."""
        self._next = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def listen(self, host: str, port: int) -> None:
        """Start accepting on ``host:port``; ``OSError`` when it cannot bind."""
        self._server = await asyncio.start_server(self._accepted, host, port)

    def set_backends(self, ports: list[int]) -> None:
        """The ready backends from now on (new connections only)."""
        self.ports = tuple(sorted(set(ports)))

    def close(self) -> None:
        """Stop listening and cut every forwarded connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._open):
            task.cancel()

    async def wait_closed(self) -> None:
        """After ``close``: until every forwarded connection's sockets are closed."""
        await asyncio.gather(*self._open, return_exceptions=True)

    def _pick(self) -> list[int]:
        """Every backend once, starting with the next in round-robin order."""
        ports = self.ports
        if not ports:
            return []
        start = self._next % len(ports)
        self._next = start + 1
        return [*ports[start:], *ports[:start]]

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._open.add(task)
        self.connections += 1
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await _pipe_both(reader, writer, up_reader, up_writer)
            finally:
                up_writer.close()
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._open.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for port in self._pick():
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(self.backend_host, port), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as error:
                logger.warning("%s: gRPC backend port %d refused: %s", self.key, port, error)
        return None


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until either side closes (then close both: gRPC never half-closes
    a connection it still uses)."""
    copies = [
        asyncio.create_task(_copy(reader, up_writer)),
        asyncio.create_task(_copy(up_reader, writer)),
    ]
    try:
        await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for copy in copies:
            copy.cancel()
        for copy in copies:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await copy


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Bounded copying: ``drain`` waits while the other side reads slower (backpressure)."""
    with contextlib.suppress(OSError):
        while True:
            data = await source.read(_CHUNK)
            if not data:
                return
            sink.write(data)
            await sink.drain()
