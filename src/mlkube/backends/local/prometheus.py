"""A local Prometheus for ``mlkube up --prometheus``: its config, start, readiness, stop.

The config (pure: ``prometheus_config``) scrapes the replicas listed in the controller's
file_sd targets (``<state>/prometheus/targets.json``, rewritten on every replica change, so
Prometheus follows replicas as they come and go), loads the rule file of our alerts
(``alerts.rule_file``) and, when ``up --alert-webhook`` runs a local Alertmanager, sends the
firing alerts there (``alerting:``). The process is Debian's ``prometheus`` binary on
127.0.0.1 with a free port and its TSDB under the state directory, run and recorded by
``backends.local.daemon`` (``<state>/prometheus/prometheus.json``), so ``mlkube down`` in
another process stops exactly the Prometheus that ``up`` started.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlkube.backends.local import alertmanager, daemon
from mlkube.errors import BackendError
from mlkube.observability.alerts import duration, job_rule_group, rule_file
from mlkube.spec.deployment import ModelDeployment

DEFAULT_BINARY = "/usr/bin/prometheus"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RETENTION = "2d"
"""TSDB retention of the local Prometheus: enough for a working session, bounded on disk."""
RESEND_DELAY = "10s"
"""How often a firing alert is sent to Alertmanager again (Prometheus's default is 1m). An
alert that fires before Prometheus has found the Alertmanager (its discovery syncs every 5s)
is not lost for a minute; on loopback the extra posts cost nothing."""

PrometheusInfo = daemon.Recorded
"""A running local Prometheus, as recorded in ``prometheus.json``."""


class PrometheusNotInstalledError(BackendError):
    """``--prometheus`` was asked for and no prometheus binary is found."""

    def __init__(self, searched: str) -> None:
        super().__init__(
            f"prometheus is not installed (looked for '{searched}' and on PATH): install it with "
            "`sudo apt-get install prometheus` (Debian/Ubuntu) or download it from "
            "https://prometheus.io/download/ and put it on PATH"
        )


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
    alertmanager_target: str | None = None,
) -> dict[str, Any]:
    """A prometheus.yml as a dict. Pure.

    ``honor_labels`` keeps the replica's own ``revision`` label (equal to the target's) rather
    than renaming it ``exported_revision``. ``controller_target`` (``127.0.0.1:PORT``) adds a
    job for the controller's per-deployment metrics; ``alertmanager_target`` (``HOST:PORT``)
    the Alertmanager that firing alerts are sent to.
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
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }
    if alertmanager_target is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager_target]}]}]
        }
    return config


def write_config(
    state: Path,
    deployments: Iterable[ModelDeployment],
    *,
    scrape_interval_s: float | None = None,
    controller_target: str | None = None,
) -> Layout:
    """Write prometheus.yml and rules.yml under ``<state>/prometheus``.

    The scrape interval defaults to the smallest ``monitoring.scrapeInterval`` of the
    deployments (15 s without any). Alerts go to the Alertmanager that ``state`` runs, if
    any (started first by ``up --alert-webhook``). An empty targets file is created when the
    controller has not written one yet, so Prometheus starts clean.
    """
    docs = list(deployments)
    layout = Layout.of(state)
    daemon.private_folder(layout.folder)
    if scrape_interval_s is None:
        intervals = [d.spec.monitoring.scrape_interval for d in docs]
        scrape_interval_s = min(intervals) if intervals else 15.0
    if not layout.targets.exists():
        layout.targets.write_text("[]")
    rules = rule_file(docs)
    rules["groups"].append(job_rule_group())  # the controller runs jobs whatever the specs
    daemon.write_private(layout.rules, yaml.safe_dump(rules, sort_keys=False))
    receiver = alertmanager.running(state)
    config = prometheus_config(
        targets_file=layout.targets,
        rule_files=[layout.rules],
        scrape_interval_s=scrape_interval_s,
        controller_target=controller_target,
        alertmanager_target=f"127.0.0.1:{receiver.port}" if receiver is not None else None,
    )
    daemon.write_private(layout.config, yaml.safe_dump(config, sort_keys=False))
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
    from mlkube.backends.local.ports import LOOPBACK, free_port

    existing = running(state)
    if existing is not None:
        return existing
    executable = find_binary(binary)
    layout = Layout.of(state)
    if not layout.config.exists():
        raise BackendError(f"no Prometheus config at {layout.config}: call write_config first")
    port = port or free_port()
    daemon.private_folder(layout.data)
    argv = [
        executable,
        f"--config.file={layout.config}",
        f"--storage.tsdb.path={layout.data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",  # POST /-/reload after a rule file change
        f"--rules.alert.resend-delay={RESEND_DELAY}",
    ]
    return daemon.start(
        "prometheus",
        argv,
        port=port,
        config=layout.config,
        log=layout.log,
        record=layout.info,
        timeout_s=timeout_s,
    )


def running(state: Path) -> PrometheusInfo | None:
    """The Prometheus recorded under ``state`` if that very process still runs."""
    return daemon.running(Layout.of(state).info)


def read_info(state: Path) -> PrometheusInfo | None:
    return daemon.read(Layout.of(state).info)


def reload(state: Path) -> bool:
    """Ask the running Prometheus to re-read its config and rules; False when none runs."""
    return daemon.reload(Layout.of(state).info)


def stop(state: Path, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the recorded Prometheus (SIGTERM, then SIGKILL after ``timeout_s``).

    Returns False when none was running. A pid reused by another process is never signalled:
    the start time must match too.
    """
    return daemon.stop(Layout.of(state).info, timeout_s=timeout_s)
