"""The controller's end of the balancer process: start or re-attach, send routes, read counters.

The controller supervises one balancer process per state directory (``balancer.process``). On
start it re-attaches to the one ``balancer.json`` names when that process still runs (same pid
and start time), and starts a new one otherwise. Routing changes are sent without waiting
(the channel keeps their order); ``serve`` and ``stats`` wait for their answer.

While no balancer is attached (unit tests build a ``Controller`` without one, or the balancer
died and is being replaced) sends are dropped: the controller re-sends every route when it
attaches (``Controller.attach_balancer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlkube.backends.local import supervisor
from mlkube.backends.local.balancer.protocol import (
    BALANCER_FILE,
    MAX_LINE_BYTES,
    BalancerInfo,
    encode,
    read_info,
)
from mlkube.backends.local.proxy import Backend, Router
from mlkube.backends.local.supervisor import ProcessHandle
from mlkube.clock import Clock

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
START_POLL_S = 0.05
ANSWER_TIMEOUT_S = 10.0

HeaderRule = tuple[str, str | None, set[str]]


class BalancerError(Exception):
    """The balancer refused an op (a port it cannot bind) or is not attached."""


class BalancerLink:
    """One connection to the balancer process, and the handle of that process."""

    def __init__(self, state: Path, clock: Clock) -> None:
        self.state = state
        self.clock = clock
        self.handle: ProcessHandle | None = None
        self.adopted = False
        """Whether the attached balancer was already running (started by an earlier
        controller)."""
        self.on_demand: Callable[[str], None] = lambda key: None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._listener: asyncio.Task[None] | None = None

    @property
    def attached(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    def alive(self) -> bool:
        return self.attached and self.handle is not None and self.handle.poll() is None

    # attaching ---------------------------------------------------------------------------------
    async def attach(self) -> bool:
        """Re-attach to the running balancer, or start one; True when it was already running
        (its routes are still in place)."""
        self.detach()
        info = read_info(self.state)
        if info is not None:
            handle = supervisor.adopt(info.pid, info.start_time)
            if handle is not None and await self._connect(info):
                self.handle, self.adopted = handle, True
                logger.info("re-attached to balancer pid %d", info.pid)
                return True
            if handle is not None:  # alive but not answering: it would keep the ports
                logger.warning("balancer pid %d does not answer; replacing it", info.pid)
                handle.kill()
        handle = self._spawn()
        deadline = self.clock.monotonic() + START_TIMEOUT_S
        while self.clock.monotonic() < deadline and handle.poll() is None:
            info = read_info(self.state)
            if info is not None and info.pid == handle.pid and await self._connect(info):
                self.handle, self.adopted = handle, False
                logger.info("started balancer pid %d", handle.pid)
                return False
            await self.clock.sleep(START_POLL_S)
        handle.kill()
        raise BalancerError(
            f"the balancer did not start (see {self.state / 'logs' / 'balancer.log'})"
        )

    def _spawn(self) -> ProcessHandle:
        (self.state / BALANCER_FILE).unlink(missing_ok=True)
        argv = [sys.executable, "-m", "mlkube.backends.local.balancer"]
        return supervisor.spawn(
            [*argv, "--state-dir", str(self.state)],
            env=dict(os.environ),
            log_path=self.state / "logs" / "balancer.log",
        )

    async def _connect(self, info: BalancerInfo) -> bool:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", info.port, limit=MAX_LINE_BYTES
            )
        except OSError:
            return False
        writer.write(encode({"id": 0, "op": "hello", "token": info.token}))
        try:
            answer = json.loads(await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S))
        except (OSError, TimeoutError, ValueError):
            writer.close()
            return False
        if not answer.get("ok"):
            writer.close()
            return False
        self._reader, self._writer = reader, writer
        self._listener = asyncio.get_running_loop().create_task(self._listen(reader))
        return True

    def detach(self) -> None:
        """Close the connection (the balancer keeps running)."""
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
        self._fail_pending()

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = json.loads(line)
                if "event" in message:
                    if message["event"] == "demand":
                        self.on_demand(str(message["key"]))
                    continue
                future = self._pending.pop(int(message["id"]), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (OSError, ValueError, asyncio.LimitOverrunError) as error:
            logger.warning("balancer connection failed: %s", error)
        finally:
            if self._reader is reader and self._writer is not None:
                self._writer.close()
            self._fail_pending()

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BalancerError("the balancer connection closed"))
        self._pending.clear()

    # ops ---------------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> asyncio.Future[dict[str, Any]] | None:
        if not self.attached or self._writer is None:
            return None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self._writer.write(encode({"id": self._next_id, **message}))
        # Fire-and-forget sends may never be awaited: retrieve their result so a failure is
        # not reported as "exception was never retrieved".
        future.add_done_callback(_quiet)
        return future

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        future = self._send(message)
        if future is None:
            raise BalancerError("no balancer attached")
        try:
            answer = await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
        except TimeoutError as error:
            raise BalancerError(f"the balancer did not answer {message['op']}") from error
        if not answer.get("ok"):
            raise BalancerError(str(answer.get("error", "refused")))
        return answer

    async def serve(self, key: str, host: str, port: int, grpc_port: int | None = None) -> None:
        """Listen for ``key`` (and pass gRPC connections on ``grpc_port`` to its replicas);
        ``OSError`` when a port cannot be bound."""
        message = {"op": "serve", "key": key, "host": host, "port": port, "grpcPort": grpc_port}
        try:
            await self._call(message)
        except BalancerError as error:
            raise OSError(str(error)) from error

    def configure(
        self,
        key: str,
        backends: list[Backend],
        weights: dict[str, float],
        rule: HeaderRule | None,
        hold_s: float,
        *,
        max_body_bytes: int | None = None,
        request_timeout_s: float | None = None,
    ) -> None:
        self._send(
            {
                "op": "configure",
                "key": key,
                "backends": [
                    {
                        "name": b.name,
                        "port": b.port,
                        "revision": b.revision,
                        "draining": b.draining,
                        "grpcPort": b.grpc_port,
                    }
                    for b in backends
                ],
                "weights": weights,
                "headerRule": [rule[0], rule[1], sorted(rule[2])] if rule else None,
                "holdS": hold_s,
                "maxBodyBytes": max_body_bytes,
                "requestTimeoutS": request_timeout_s,
            }
        )

    def replica_exited(self, key: str, name: str, *, caused_by_request: bool) -> None:
        """A replica of ``key`` exited: the balancer retries the POSTs it died reading only
        when its death was not theirs (``Router.replica_exited``)."""
        self._send({"op": "exited", "key": key, "name": name, "causedByRequest": caused_by_request})

    def drain(self, key: str, name: str) -> None:
        self._send({"op": "drain", "key": key, "name": name})

    def close(self, key: str) -> None:
        self._send({"op": "close", "key": key})

    async def stats(self) -> dict[str, Any] | None:
        """Every router's counters (``process.stats_of``); None when none is attached."""
        if not self.attached:
            return None
        try:
            answer = await self._call({"op": "stats"})
        except BalancerError:
            return None
        routers: dict[str, Any] = answer["routers"]
        return routers

    async def exit(self) -> None:
        """Stop the balancer (``mlkube down``): ask it, then make sure."""
        with contextlib.suppress(BalancerError):
            await self._call({"op": "exit"})
        handle = self.handle
        self.detach()
        if handle is None:
            return
        deadline = self.clock.monotonic() + START_TIMEOUT_S
        while handle.poll() is None and self.clock.monotonic() < deadline:
            await self.clock.sleep(START_POLL_S)
        handle.kill()
        (self.state / BALANCER_FILE).unlink(missing_ok=True)


def _quiet(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.cancelled():
        future.exception()


def mirror_stats(router: Router, data: dict[str, Any]) -> None:
    """Copy a router's counters from the balancer (``process.stats_of``) into the controller's
    copy of that router, which the autoscaler, canary analysis, status and drains read."""
    stats = router.stats
    stats.requests = int(data["requests"])
    stats.errors = int(data["errors"])
    stats.failed = int(data["failed"])
    stats.retries = int(data["retries"])
    stats.held = int(data["held"])
    stats.latency_counts = [int(c) for c in data["latencyCounts"]]
    router.holding = int(data["holding"])
    for name, (in_flight, requests, errors) in data["backends"].items():
        backend = router.backends.get(name)
        if backend is not None:
            backend.in_flight, backend.requests, backend.errors = in_flight, requests, errors
