"""What the controller and the balancer process say to each other, and where it is written.

The balancer listens on a loopback TCP port for its controller; ``<state>/balancer.json``
(mode 0600, like the control API's token) holds that port, a random token the controller
sends first, and the balancer's pid and start time (so a restarted controller re-attaches to
the balancer it finds there, and never to a process that reused the pid).

Messages are JSON lines. The controller sends ``{"id": N, "op": ...}``; the balancer answers
every one, in order, with ``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "error":
"..."}``. The balancer also sends ``{"event": "demand", "key": KEY}`` when it holds a request
because no replica of KEY is routable (scale from zero).

Ops: ``hello`` (token), ``serve`` (key, port, host, grpcPort: the gRPC pass-through port or
null), ``configure`` (key, backends, each with its replica's grpcPort, weights,
headerRule, holdS, maxBodyBytes, requestTimeoutS), ``drain`` (key, name), ``exited`` (key,
name, causedByRequest), ``close`` (key), ``stats``, ``exit``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BALANCER_FILE = "balancer.json"
MAX_LINE_BYTES = 4 * 2**20  # a configure of a few hundred replicas is a few tens of kB


@dataclass(frozen=True, slots=True)
class BalancerInfo:
    """What ``balancer.json`` says about the running balancer."""

    pid: int
    start_time: float
    port: int
    token: str

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "startTime": self.start_time,
            "port": self.port,
            "token": self.token,
        }


def write_info(state: Path, info: BalancerInfo) -> None:
    """Write ``balancer.json`` atomically, created 0600 (it holds the token)."""
    path = state / BALANCER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(info.to_json(), file)
    tmp.replace(path)


def read_info(state: Path) -> BalancerInfo | None:
    """``balancer.json`` when it exists and parses; None otherwise."""
    try:
        data = json.loads((state / BALANCER_FILE).read_text())
        return BalancerInfo(
            int(data["pid"]), float(data["startTime"]), int(data["port"]), str(data["token"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
