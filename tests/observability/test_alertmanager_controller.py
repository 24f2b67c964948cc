"""The controller's side of `up --alert-webhook`: Alertmanager first, then a Prometheus
(new or already running) whose config sends it the alerts; the URL in status; a second `up`
reloads; a refused config is a 409 in one line; SIGTERM to the controller stops both. No
replica is needed for any of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlkube.backends.local import alertmanager, prometheus
from mlkube.backends.local.backend import LocalBackend
from mlkube.backends.local.supervisor import pid_alive
from mlkube.errors import BackendError

from .conftest import tool
from .promclient import wait_for
from .webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def test_the_controller_runs_alertmanager_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    prom_binary = tool("prometheus")
    try:
        am_binary = alertmanager.find_binary()
    except alertmanager.AlertmanagerNotInstalledError:
        am_binary = tool("prometheus-alertmanager")
    state = tmp_path / "state"
    backend = LocalBackend(str(state))
    pids: set[int] = set()
    with WebhookReceiver() as hook:
        request = {"binary": am_binary, "config": alertmanager.webhook_config([hook.url])}
        # The controller as `up` starts it, but a child of this test, which reaps it.
        controller = subprocess.Popen(
            [sys.executable, "-m", "mlkube.backends.local.controller", "--state-dir", str(state)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pids.add(controller.pid)
        try:
            wait_for(backend.is_running, 30, "the controller")
            # `up --prometheus` first, then `up --prometheus --alert-webhook`: the running
            # Prometheus reloads a config that now sends its alerts to the new Alertmanager.
            first = backend.start_prometheus(prom_binary)
            assert first["action"] == "started" and first.get("alertmanagerUrl") is None
            config = prometheus.Layout.of(state).config
            assert "alerting" not in yaml.safe_load(config.read_text())
            answer = backend.start_prometheus(prom_binary, request)
            assert (answer["action"], answer["alertmanagerAction"]) == ("reloaded", "started")
            am, prom = alertmanager.running(state), prometheus.running(state)
            assert am is not None and prom is not None
            pids.update((am.pid, prom.pid))
            assert answer["alertmanagerUrl"] == am.url and answer["url"] == prom.url
            written = yaml.safe_load(config.read_text())
            alerting = written["alerting"]["alertmanagers"][0]["static_configs"][0]
            assert alerting["targets"] == [f"127.0.0.1:{am.port}"]

            report = backend.status()
            assert report.document["controller"]["alertmanager"] == am.url
            assert f"alertmanager: {am.url}" in report.notes

            again = backend.start_prometheus(prom_binary, request)
            assert (again["action"], again["alertmanagerAction"]) == ("reloaded", "reloaded")
            assert alertmanager.running(state) == am

            refused = {"route": {"receiver": "x"}, "receivers": [{"name": "x", "nope": 1}]}
            with pytest.raises(BackendError) as raised:
                backend.start_prometheus(prom_binary, {"binary": am_binary, "config": refused})
            assert "alertmanager refused the new config" in str(raised.value)
            assert "\n" not in str(raised.value)

            controller.send_signal(signal.SIGTERM)
            assert controller.wait(timeout=30) == 0
            wait_for(lambda: not pid_alive(prom.pid), 20, "prometheus to exit")
            wait_for(lambda: not pid_alive(am.pid), 20, "alertmanager to exit")
            assert alertmanager.running(state) is None
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            controller.wait(timeout=10)
