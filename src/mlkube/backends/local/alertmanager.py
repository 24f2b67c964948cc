"""A local Alertmanager for ``mlkube up --prometheus --alert-webhook URL``.

The local Prometheus evaluates the alert rules; without an Alertmanager a firing alert is
only visible on Prometheus's /alerts page. This module writes the Alertmanager config (pure:
``webhook_config``, or the user's own file checked by ``user_config``), starts Debian's
``prometheus-alertmanager`` binary on 127.0.0.1 with a free port, clustering off and its
data under ``<state>/alertmanager`` (folder 0700, files 0600: receivers often carry keys),
reloads it when ``up`` is run again, and stops it on ``mlkube down``. Prometheus finds it
through ``running(state)`` (``prometheus.write_config`` adds the ``alerting:`` block).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mlkube.backends.local import daemon
from mlkube.errors import BackendError
from mlkube.observability.alerts import duration

DEFAULT_BINARY = "/usr/bin/prometheus-alertmanager"
BINARY_NAMES = ("alertmanager", "prometheus-alertmanager")  # upstream's name, then Debian's
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RECEIVER = "mlkube-webhooks"
GROUP_BY = ("alertname", "namespace", "deployment")
GROUP_WAIT_S = 10.0
"""Wait before the first notification of a new group (Alertmanager's default is 30s): long
enough to batch the alerts of one incident, short enough to see a local alert soon."""
GROUP_WAIT_ENV = "MLKUBE_ALERT_GROUP_WAIT_S"
"""Overrides ``GROUP_WAIT_S`` for ``--alert-webhook`` (seconds): how tests see an alert soon."""
GROUP_INTERVAL_S = 60.0
"""Wait before notifying about alerts added to a group already notified (default 5m)."""
REPEAT_INTERVAL_S = 4 * 3600.0
"""Resend a still-firing alert this often (Alertmanager's default)."""

AlertmanagerInfo = daemon.Recorded


class AlertmanagerNotInstalledError(BackendError):
    """An Alertmanager was asked for and no binary is found."""

    def __init__(self, searched: str) -> None:
        super().__init__(
            f"alertmanager is not installed (looked for '{searched}' and on PATH): install it "
            "with `sudo apt-get install prometheus-alertmanager` (Debian/Ubuntu) or download "
            "it from https://prometheus.io/download/ and put it on PATH"
        )


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the local Alertmanager keeps its files under the state directory."""

    folder: Path

    @classmethod
    def of(cls, state: Path) -> Layout:
        return cls(state / "alertmanager")

    @property
    def config(self) -> Path:
        return self.folder / "alertmanager.yml"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "alertmanager.log"

    @property
    def info(self) -> Path:
        return self.folder / "alertmanager.json"


def check_webhook(url: str) -> str:
    """``url`` if Alertmanager can post to it; a BackendError naming it otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(
            f"alert webhook '{url}' is not an http(s) URL (e.g. http://127.0.0.1:9000/alerts)"
        )
    return url


def webhook_config(
    webhooks: Sequence[str],
    *,
    group_wait_s: float = GROUP_WAIT_S,
    group_interval_s: float = GROUP_INTERVAL_S,
    repeat_interval_s: float = REPEAT_INTERVAL_S,
) -> dict[str, Any]:
    """An alertmanager.yml (as a dict) that sends every alert to every URL. Pure.

    One group per alert and deployment; resolved alerts are sent too, so a receiver can
    close what it opened. The webhook body is Alertmanager's (version "4"):
    https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
    """
    if not webhooks:
        raise BackendError("an alert webhook config needs at least one URL")
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": duration(group_wait_s),
            "group_interval": duration(group_interval_s),
            "repeat_interval": duration(repeat_interval_s),
        },
        "receivers": [
            {
                "name": RECEIVER,
                "webhook_configs": [
                    {"url": check_webhook(url), "send_resolved": True} for url in webhooks
                ],
            }
        ],
    }


def group_wait_from(env: dict[str, str] | None = None) -> float:
    """``$MLKUBE_ALERT_GROUP_WAIT_S`` (a positive number of seconds) or ``GROUP_WAIT_S``."""
    raw = (os.environ if env is None else env).get(GROUP_WAIT_ENV)
    if raw is None:
        return GROUP_WAIT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise BackendError(f"{GROUP_WAIT_ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


def user_config(path: Path) -> dict[str, Any]:
    """The user's own alertmanager.yml, checked for the parts every config needs.

    Alertmanager checks the rest when it starts (its error is shown then); this catches a
    wrong file before anything starts, in one line.
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BackendError(
            f"cannot read the Alertmanager config {path}: {error.strerror}"
        ) from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise BackendError(f"{path} is not valid YAML{line}") from None
    if not isinstance(loaded, dict):
        raise BackendError(f"{path} is not an Alertmanager config: expected a mapping")
    route, receivers = loaded.get("route"), loaded.get("receivers")
    if not isinstance(route, dict) or not isinstance(route.get("receiver"), str):
        raise BackendError(f"{path}: an Alertmanager config needs route.receiver")
    names = [r.get("name") for r in receivers or () if isinstance(r, dict)]
    if not isinstance(receivers, list) or route["receiver"] not in names:
        raise BackendError(
            f"{path}: route.receiver '{route['receiver']}' is not one of receivers "
            f"({', '.join(str(n) for n in names) or 'none'})"
        )
    return loaded


def find_binary(binary: str | None = None) -> str:
    """The alertmanager executable: ``binary``, else PATH, else Debian's path."""
    found = [shutil.which(name) for name in BINARY_NAMES]
    candidate = binary or next((f for f in found if f), None) or DEFAULT_BINARY
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise AlertmanagerNotInstalledError(candidate)
    return candidate


def write_config(state: Path, config: dict[str, Any]) -> Layout:
    """Write alertmanager.yml (0600) under ``<state>/alertmanager`` (0700)."""
    layout = Layout.of(state)
    daemon.private_folder(layout.folder)
    daemon.write_private(layout.config, yaml.safe_dump(config, sort_keys=False))
    return layout


def start_or_reload(
    state: Path,
    config: dict[str, Any],
    *,
    port: int | None = None,
    binary: str | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> tuple[str, AlertmanagerInfo]:
    """Write ``config``; reload the Alertmanager of ``state`` or start one.

    Returns ``("reloaded" | "started", info)``. Raises AlertmanagerNotInstalledError without
    the binary and BackendError (with Alertmanager's own words) when it refuses the config.
    """
    layout = write_config(state, config)
    existing = running(state)
    if existing is not None:
        if not daemon.reload(layout.info):
            raise BackendError(
                f"alertmanager refused the new config {layout.config} (see {layout.log}): "
                f"{daemon.log_tail(layout.log, 1)}"
            )
        return "reloaded", existing
    return "started", start(state, port=port, binary=binary, timeout_s=timeout_s)


def start(
    state: Path,
    *,
    port: int | None = None,
    binary: str | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> AlertmanagerInfo:
    """Start Alertmanager with the config ``write_config`` wrote; wait until it is ready."""
    from mlkube.backends.local.ports import LOOPBACK, free_port

    existing = running(state)
    if existing is not None:
        return existing
    executable = find_binary(binary)
    layout = Layout.of(state)
    if not layout.config.exists():
        raise BackendError(f"no Alertmanager config at {layout.config}: call write_config first")
    port = port or free_port()
    daemon.private_folder(layout.data)
    argv = [
        executable,
        f"--config.file={layout.config}",
        f"--storage.path={layout.data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        f"--web.external-url=http://{LOOPBACK}:{port}",  # the links in notifications
        "--cluster.listen-address=",  # no gossip port on every interface: one local instance
    ]
    return daemon.start(
        "alertmanager",
        argv,
        port=port,
        config=layout.config,
        log=layout.log,
        record=layout.info,
        timeout_s=timeout_s,
    )


def running(state: Path) -> AlertmanagerInfo | None:
    """The Alertmanager recorded under ``state`` if that very process still runs."""
    return daemon.running(Layout.of(state).info)


def stop(state: Path, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the recorded Alertmanager; False when none was running."""
    return daemon.stop(Layout.of(state).info, timeout_s=timeout_s)
