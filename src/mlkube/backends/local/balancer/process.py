"""The balancer process: every deployment's load balancer, fed its routes by the controller.

It runs apart from the controller (its own session, started by the controller through
``supervisor``), so requests keep flowing while the controller is down: SIGKILLed, crashed or
restarting. A restarted controller re-attaches to it (``balancer.json``) and re-sends the
routes; until then the balancer keeps routing to the replicas it knew, which keep running
too. It holds no state of its own worth keeping: if it dies, the controller starts a new one
and sends everything again.

The routing itself is ``proxy.Router`` and ``proxy.serve``; this module is the control channel
(``protocol``) around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mlkube.backends.local.balancer.protocol import (
    MAX_LINE_BYTES,
    BalancerInfo,
    encode,
    write_info,
)
from mlkube.backends.local.balancer.tcp import TcpPassthrough
from mlkube.backends.local.proxy import Backend, Router, serve

logger = logging.getLogger(__name__)

DEFAULT_HOLD_S = 10.0  # until the controller's first configure says the spec's hold


@dataclass(slots=True)
class Served:
    """One deployment's router and the server listening for it."""

    router: Router
    server: asyncio.Server
    host: str
    port: int
    grpc: TcpPassthrough | None = None
    """The gRPC port's connection-level listener (``tcp``), when the spec enables gRPC."""


class Balancer:
    """Every deployment's router, and the controllers connected to configure them."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.served: dict[str, Served] = {}
        self.controllers: set[asyncio.StreamWriter] = set()
        self.stopping = asyncio.Event()

    # the control channel ---------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One controller's connection: hello with the token first, then ops in order."""
        try:
            first = json.loads(await reader.readline())
            if first.get("op") != "hello" or not secrets.compare_digest(
                str(first.get("token", "")), self.token
            ):
                writer.write(encode({"id": first.get("id"), "ok": False, "error": "bad token"}))
                return
            writer.write(encode({"id": first.get("id"), "ok": True}))
            self.controllers.add(writer)
            while not reader.at_eof():
                line = await reader.readline()
                if not line:
                    break
                message = json.loads(line)
                writer.write(encode(await self.answer(message)))
                await writer.drain()
        except (OSError, ValueError, asyncio.LimitOverrunError, AttributeError) as error:
            logger.warning("controller connection ended: %s", error)
        finally:
            self.controllers.discard(writer)
            writer.close()

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"id": message.get("id"), "ok": True}
        try:
            reply.update(await self._do(message))
        except (OSError, KeyError, ValueError, TypeError) as error:
            reply = {"id": message.get("id"), "ok": False, "error": str(error)}
        return reply

    async def _do(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        if op == "serve":
            key, host = str(message["key"]), str(message["host"])
            await self.serve(key, host, int(message["port"]))
            grpc_port = message.get("grpcPort")
            await self.serve_grpc(key, host, int(grpc_port) if grpc_port else None)
        elif op == "configure":
            self.configure(message)
        elif op == "drain":
            served = self.served.get(str(message["key"]))
            if served is not None:
                served.router.drain(str(message["name"]))
        elif op == "close":
            self.close(str(message["key"]))
        elif op == "exited":
            served = self.served.get(str(message["key"]))
            if served is not None:
                served.router.replica_exited(
                    str(message["name"]), caused_by_request=bool(message["causedByRequest"])
                )
        elif op == "stats":
            return {"routers": {key: stats_of(s.router) for key, s in self.served.items()}}
        elif op == "exit":
            self.stopping.set()
        else:
            raise ValueError(f"unknown op {op!r}")
        return {}

    # the routers -------------------------------------------------------------------------------
    async def serve(self, key: str, host: str, port: int) -> None:
        """Listen for ``key`` on ``host:port``; already listening there: nothing to do (a
        controller re-attaching keeps the routes the balancer has)."""
        served = self.served.get(key)
        if served is not None and (served.host, served.port) == (host, port):
            return
        if served is not None:
            self.close(key)
        router = Router(key, hold_s=DEFAULT_HOLD_S, on_demand=lambda: self.demand(key))
        server = await serve(router, host, port)
        self.served[key] = Served(router, server, host, port)
        logger.info("serving %s on %s:%d", key, host, port)

    async def serve_grpc(self, key: str, host: str, port: int | None) -> None:
        """Pass gRPC connections on ``host:port`` to the replicas (None: no gRPC)."""
        served = self.served[key]
        current = served.grpc
        if current is not None and port is not None and current.port == port:
            return
        if current is not None:
            current.close()
            served.grpc = None
        if port is not None:
            listener = TcpPassthrough(key)
            await listener.listen(host, port)
            served.grpc = listener
            logger.info("serving %s gRPC on %s:%d", key, host, port)

    def configure(self, message: dict[str, Any]) -> None:
        served = self.served[str(message["key"])]
        backends = [
            Backend(str(b["name"]), int(b["port"]), int(b["revision"]), draining=b["draining"])
            for b in message["backends"]
        ]
        weights = {str(k): float(v) for k, v in message["weights"].items()}
        rule = message.get("headerRule")
        header_rule = (str(rule[0]), rule[1], set(rule[2])) if rule else None
        served.router.hold_s = float(message["holdS"])
        if message.get("maxBodyBytes") is not None:
            served.router.set_server_limits(
                max_body_bytes=int(message["maxBodyBytes"]),
                request_timeout_s=float(message["requestTimeoutS"]),
            )
        served.router.configure(backends, weights, header_rule)
        if served.grpc is not None:
            served.grpc.set_backends(
                [
                    int(b["grpcPort"])
                    for b in message["backends"]
                    if b.get("grpcPort") and not b["draining"] and weights.get(str(b["name"]))
                ]
            )

    def close(self, key: str) -> None:
        served = self.served.pop(key, None)
        if served is not None:
            served.server.close()
            if served.grpc is not None:
                served.grpc.close()
            served.router.configure([], {})  # closes its idle upstream connections
            logger.info("stopped serving %s", key)

    def demand(self, key: str) -> None:
        """A request is held with no routable replica: tell the controllers (scale from 0)."""
        for writer in list(self.controllers):
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(encode({"event": "demand", "key": key}))


def stats_of(router: Router) -> dict[str, Any]:
    """The counters the controller mirrors: autoscaling, canary analysis, status, drains."""
    stats = router.stats
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "failed": stats.failed,
        "retries": stats.retries,
        "held": stats.held,
        "holding": router.holding,
        "latencyCounts": list(stats.latency_counts),
        "backends": {
            name: [b.in_flight, b.requests, b.errors] for name, b in router.backends.items()
        },
    }


async def run(state: Path) -> None:
    """Serve until told to exit (``exit`` op, SIGTERM or SIGINT)."""
    balancer = Balancer(secrets.token_urlsafe(32))
    control = await asyncio.start_server(balancer.handle, "127.0.0.1", 0, limit=MAX_LINE_BYTES)
    port = int(control.sockets[0].getsockname()[1])
    me = psutil.Process()
    write_info(state, BalancerInfo(me.pid, me.create_time(), port, balancer.token))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, balancer.stopping.set)
    logger.info("balancer pid %d, control port %d", me.pid, port)
    await balancer.stopping.wait()
    control.close()
    for key in list(balancer.served):
        balancer.close(key)
