"""Runtime knobs of the controller (settings, not spec): periods, back-off, paths.

Every knob can be set by an environment variable ``MLKUBE_<NAME>`` (upper case), which is how
tests shrink periods and back-offs without touching a spec. Defaults are the production values.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_STATE_DIR = "~/.mlkube"
STATE_DIR_ENV = "MLKUBE_STATE_DIR"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """How often the controller looks, how patient it is, and what it runs."""

    reconcile_period_s: float = 0.5
    """Reconcile tick: observe processes, step rollouts, act."""
    probe_period_s: float = 1.0
    """Readiness probe period of every replica (Kubernetes' periodSeconds)."""
    probe_timeout_s: float = 1.0
    failure_threshold: int = 3
    """Consecutive failed probes before a ready replica counts as NotReady."""
    unready_restart_s: float = 60.0
    """A replica NotReady this long is restarted with reason 'failed readiness'."""
    startup_timeout_s: float = 300.0
    """A replica not ready this long after starting is restarted (failed readiness)."""
    metrics_period_s: float = 2.0
    """How often replica /metrics are scraped for status, canary analysis and the autoscaler.

    As often as the default concurrency/RPS policy decides (2 s): a slower scrape would make
    it decide on stale numbers (measured: at 5 s the first decision came 6 s after a step)."""
    backoff_base_s: float = 10.0
    backoff_max_s: float = 300.0
    backoff_reset_s: float = 600.0
    hold_s: float = 10.0
    """How long the load balancer holds a request while no replica is ready (not at zero)."""
    log_rotate_period_s: float = 1.0
    """How often replica log files are checked against ``logging.files.maxSize``."""
    balancer_period_s: float = 0.25
    """How often the balancer process is checked (started again if it died) and its counters
    read back (the autoscaler, canary analysis and status read them)."""
    stop_grace_s: float = 5.0
    """After drainTimeout, how long a replica has to exit before SIGKILL."""
    cpu_reserve_millis: int = 250
    """CPU kept back from admission for the controller and the system."""
    memory_reserve_bytes: int = 512 * 2**20
    balancer_host: str = "127.0.0.1"
    """Address every deployment's load balancer binds (``MLKUBE_BALANCER_HOST``). Loopback by
    default: the balancers take no token, so reaching them from other machines is a choice to
    make on purpose (``0.0.0.0`` or one interface's address)."""
    replica_command: tuple[str, ...] = field(
        default_factory=lambda: (sys.executable, "-m", "mlkube", "serve")
    )
    """The replica program; the spec file and flags are appended."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ControllerSettings:
        """Defaults overridden by ``MLKUBE_<FIELD>`` variables (the command as a JSON list)."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for item in fields(cls):
            raw = source.get(f"MLKUBE_{item.name.upper()}")
            if raw is None:
                continue
            if item.name == "replica_command":
                values[item.name] = tuple(json.loads(raw))
            elif item.name == "balancer_host":
                values[item.name] = _ip_address(raw, f"MLKUBE_{item.name.upper()}")
            elif item.type in ("int", int):
                values[item.name] = int(raw)
            else:
                values[item.name] = float(raw)
        return cls(**values)  # type: ignore[arg-type]


def _ip_address(raw: str, variable: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError(
            f"{variable} must be an IP address such as 127.0.0.1 or 0.0.0.0, got {raw!r}"
        ) from None


def state_dir(explicit: str | None = None) -> Path:
    """``--state-dir``, else ``$MLKUBE_STATE_DIR``, else ``~/.mlkube``."""
    raw = explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    return Path(raw).expanduser().resolve()
