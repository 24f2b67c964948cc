"""A local Prometheus for ``mlkube up --prometheus``: its config, start, readiness, stop.

The config (pure: ``prometheus_config``) scrapes the replicas listed in the controller's
file_sd targets (``<state>/prometheus/targets.json``, rewritten on every replica change, so
Prometheus follows replicas as they come and go) and loads the rule file of our alerts
(``alerts.rule_file``). The process is Debian's ``prometheus`` binary on 127.0.0.1 with a
free port and its TSDB under the state directory; it is started through
``backends.local.supervisor`` (the one module that spawns) and stopped by the pid and start
time recorded in ``<state>/prometheus/prometheus.json``, so ``mlkube down`` in another
process stops exactly the Prometheus that ``up`` started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlkube.clock import SystemClock
from mlkube.errors import BackendError
from mlkube.observability.alerts import duration, rule_file
from mlkube.spec.deployment import ModelDeployment

DEFAULT_BINARY = "/usr/bin/prometheus"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.1
CLOCK = SystemClock()
RETENTION = "2d"
"""TSDB retention of the local Prometheus: enough for a working session, bounded on disk."""

# Handles of the Prometheus processes this process started: keeping the Popen lets ``stop``
# reap the child (no zombie, no "still running" warning when it is garbage-collected).
_STARTED: dict[int, Any] = {}


class PrometheusNotInstalledError(BackendError):
    """``--prometheus`` was asked for and no prometheus binary is found."""

    def __init__(self, searched: str) -> None:
        super().__init__(
            f"prometheus is not installed (looked for '{searched}' and on PATH): install it with "
            "`sudo apt-get install prometheus` (Debian/Ubuntu) or download it from "
            "https://prometheus.io/download/ and put it on PATH"
        )


@dataclass(frozen=True, slots=True)
class PrometheusInfo:
    """A running local Prometheus, as recorded in ``prometheus.json``."""

    pid: int
    start_time: float
    port: int
    url: str
    config: str


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the local Prometheus keeps its files under the state directory."""

    folder: Path

    @classmethod
    def of(cls, state: Path) -> Layout:
        return cls(state / "prometheus")

    @property
    def targets(self) -> Path:
        """Written by the controller (``Controller.write_targets``)."""
        return self.folder / "targets.json"

    @property
    def config(self) -> Path:
        return self.folder / "prometheus.yml"

    @property
    def rules(self) -> Path:
        return self.folder / "rules.yml"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "prometheus.log"

    @property
    def info(self) -> Path:
        return self.folder / "prometheus.json"


def prometheus_config(
    *,
    targets_file: Path,
    rule_files: Iterable[Path],
    scrape_interval_s: float = 15.0,
    controller_target: str | None = None,
) -> dict[str, Any]:
    """A prometheus.yml as a dict. Pure.

    ``honor_labels`` keeps the replica's own ``revision`` label (equal to the target's) rather
    than renaming it ``exported_revision``. ``controller_target`` (``127.0.0.1:PORT``) adds a
    job for the controller's per-deployment metrics.
    """
    interval = duration(scrape_interval_s)
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "mlkube-replicas",
            "honor_labels": True,
            "scrape_interval": interval,
            "scrape_timeout": duration(min(scrape_interval_s, 10.0)),
            "metrics_path": "/metrics",
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
        }
    ]
    if controller_target is not None:
        jobs.append(
            {
                "job_name": "mlkube-controller",
                "honor_labels": True,
                "scrape_interval": interval,
                "static_configs": [{"targets": [controller_target]}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


def write_config(
    state: Path,
    deployments: Iterable[ModelDeployment],
    *,
    scrape_interval_s: float | None = None,
    controller_target: str | None = None,
) -> Layout:
    """Write prometheus.yml and rules.yml under ``<state>/prometheus``.

    The scrape interval defaults to the smallest ``monitoring.scrapeInterval`` of the
    deployments (15 s without any). An empty targets file is created when the controller has
    not written one yet, so Prometheus starts clean.
    """
    docs = list(deployments)
    layout = Layout.of(state)
    layout.folder.mkdir(parents=True, exist_ok=True)
    if scrape_interval_s is None:
        intervals = [d.spec.monitoring.scrape_interval for d in docs]
        scrape_interval_s = min(intervals) if intervals else 15.0
    if not layout.targets.exists():
        layout.targets.write_text("[]")
    _write_atomic(layout.rules, yaml.safe_dump(rule_file(docs), sort_keys=False))
    config = prometheus_config(
        targets_file=layout.targets,
        rule_files=[layout.rules],
        scrape_interval_s=scrape_interval_s,
        controller_target=controller_target,
    )
    _write_atomic(layout.config, yaml.safe_dump(config, sort_keys=False))
    return layout


def find_binary(binary: str | None = None) -> str:
    """The prometheus executable: ``binary``, else PATH, else /usr/bin/prometheus."""
    candidate = binary or shutil.which("prometheus") or DEFAULT_BINARY
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise PrometheusNotInstalledError(candidate)
    return candidate


def start(
    state: Path,
    *,
    port: int | None = None,
    binary: str | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> PrometheusInfo:
    """Start Prometheus on 127.0.0.1 with the config ``write_config`` wrote; wait until ready.

    Returns the running one if ``state`` already has one. Raises PrometheusNotInstalledError
    without the binary and BackendError (with the log's last lines) when it does not start.
    """
    from mlkube.backends.local import supervisor
    from mlkube.backends.local.ports import LOOPBACK, free_port

    existing = running(state)
    if existing is not None:
        return existing
    executable = find_binary(binary)
    layout = Layout.of(state)
    if not layout.config.exists():
        raise BackendError(f"no Prometheus config at {layout.config}: call write_config first")
    port = port or free_port()
    layout.data.mkdir(parents=True, exist_ok=True)
    argv = [
        executable,
        f"--config.file={layout.config}",
        f"--storage.tsdb.path={layout.data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",  # POST /-/reload after a rule file change
    ]
    handle = supervisor.spawn(argv, env=dict(os.environ), log_path=layout.log)
    url = f"http://{LOOPBACK}:{port}"
    info = PrometheusInfo(handle.pid, handle.start_time, port, url, str(layout.config))
    if not _wait_ready(url, handle, timeout_s):
        handle.kill()
        raise BackendError(
            f"prometheus did not become ready on {url} within {timeout_s:g}s "
            f"(see {layout.log}): {_log_tail(layout.log)}"
        )
    _write_atomic(layout.info, json.dumps(_info_json(info)))
    _STARTED[handle.pid] = handle
    return info


def running(state: Path) -> PrometheusInfo | None:
    """The Prometheus recorded under ``state`` if that very process still runs."""
    from mlkube.backends.local import supervisor

    info = read_info(state)
    if info is None or supervisor.adopt(info.pid, info.start_time) is None:
        return None
    return info


def read_info(state: Path) -> PrometheusInfo | None:
    try:
        data = json.loads(Layout.of(state).info.read_text())
        return PrometheusInfo(
            int(data["pid"]),
            float(data["startTime"]),
            int(data["port"]),
            str(data["url"]),
            str(data["config"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def reload(state: Path) -> bool:
    """Ask the running Prometheus to re-read its config and rules; False when none runs."""
    info = running(state)
    if info is None:
        return False
    request = urllib.request.Request(f"{info.url}/-/reload", method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop(state: Path, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the recorded Prometheus (SIGTERM, then SIGKILL after ``timeout_s``).

    Returns False when none was running. A pid reused by another process is never signalled:
    the start time must match too.
    """
    from mlkube.backends.local import supervisor

    info = read_info(state)
    if info is None:
        return False
    handle = supervisor.adopt(info.pid, info.start_time)
    own = _STARTED.pop(info.pid, None)
    if handle is not None and own is not None:
        handle = own
    Layout.of(state).info.unlink(missing_ok=True)
    if handle is None:
        return False
    handle.signal_group(signal.SIGTERM)
    deadline = CLOCK.monotonic() + timeout_s
    while CLOCK.monotonic() < deadline:
        if handle.poll() is not None:
            return True
        CLOCK.sleep_blocking(POLL_S)
    handle.kill()
    return True


def _wait_ready(url: str, handle: Any, timeout_s: float) -> bool:
    deadline = CLOCK.monotonic() + timeout_s
    while CLOCK.monotonic() < deadline:
        if handle.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        CLOCK.sleep_blocking(POLL_S)
    return False


def _info_json(info: PrometheusInfo) -> dict[str, Any]:
    return {
        "pid": info.pid,
        "startTime": info.start_time,
        "port": info.port,
        "url": info.url,
        "config": info.config,
    }


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
