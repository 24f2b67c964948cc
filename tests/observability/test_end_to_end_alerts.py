"""`mlkube up -d --prometheus --alert-webhook URL`: a shipped rule, driven to fire by real
traffic, reaches a real webhook through the local Prometheus and Alertmanager; status says
where Alertmanager listens; `mlkube down` stops it.

The rule is MlkubeHighLatencyP99 with an objective no request can meet (1 µs) and no `for`,
so it fires as soon as Prometheus has two scrapes of the latency histogram. The `up` command
and the output it prints are the ones docs/alerts.md shows (its webhook URL and spec folder
replaced by this test's).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from mlkube.backends.local import alertmanager, prometheus
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.supervisor import pid_alive
from mlkube.testing import models
from mlkube.testing.local import LoadClient, LocalController

from .conftest import tool
from .promclient import wait_for
from .webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

DOC = Path(__file__).parents[2] / "docs" / "alerts.md"
DOC_WEBHOOK = "http://127.0.0.1:9000/alerts"
DOC_SPECS = "examples/iris/"
FAST = {
    "MLKUBE_RECONCILE_PERIOD_S": "0.1",
    "MLKUBE_PROBE_PERIOD_S": "0.2",
    "MLKUBE_METRICS_PERIOD_S": "1",
    "MLKUBE_STOP_GRACE_S": "2",
    "MLKUBE_ALERT_GROUP_WAIT_S": "1",  # the first notification of a group: 1 s, not 10 s
}


def spec_file(tmp_path: Path, port: int) -> Path:
    model = models.save_onnx(models.iris_classifier(), tmp_path, "iris")
    path = tmp_path / "iris.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris"},
                "spec": {
                    "model": {"uri": str(model.path), "format": "onnx"},
                    "replicas": 1,
                    "service": {"port": port},
                    "server": {"drainTimeout": "2s"},
                    "monitoring": {
                        "scrapeInterval": "1s",
                        "alerts": {
                            "p99LatencyMs": 0.001,
                            "forDuration": "0s",
                            "window": "30s",
                            "labels": {"team": "ml"},
                        },
                    },
                },
            }
        )
    )
    return path


def documented_up() -> tuple[str, list[str]]:
    """The ``$ mlkube up ... --alert-webhook`` line of docs/alerts.md and the output shown."""
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if "--alert-webhook" in b]
    command, *shown = block.splitlines()
    return command.removeprefix("$ "), [line for line in shown if line.strip() != "..."]


def printed(shown: str, output: str) -> bool:
    """``shown`` (``...`` for anything) is one of the lines of ``output``."""
    pattern = ".*".join(re.escape(piece) for piece in shown.strip().split("..."))
    return any(re.fullmatch(pattern, line.strip()) for line in output.splitlines())


def test_a_firing_rule_of_mlkube_up_reaches_the_users_webhook(tmp_path):
    tool("prometheus")
    try:
        alertmanager.find_binary()
    except alertmanager.AlertmanagerNotInstalledError:
        tool("prometheus-alertmanager")  # skips, saying what to install
    port = free_port()
    spec = spec_file(tmp_path, port)
    up = LocalController(tmp_path / "state", FAST)
    with WebhookReceiver() as hook:
        try:
            command, shown = documented_up()
            argv = shlex.split(command.replace(DOC_WEBHOOK, hook.url).replace(DOC_SPECS, str(spec)))
            assert argv[:2] == ["mlkube", "up"] and hook.url in argv and str(spec) in argv
            out = up.run(*argv[1:]).stdout
            for line in shown:
                assert printed(line.replace(DOC_WEBHOOK, hook.url), out), (line, out)
            controller = json.loads(up.run("status", "-o", "json").stdout)["controller"]
            am_url = controller["alertmanager"]
            assert am_url and am_url.startswith("http://127.0.0.1:")
            assert f"alertmanager started: {am_url}" in out
            assert f"alerts to receiver mlkube-webhooks: {hook.url}" in out
            assert f"alertmanager: {am_url}" in up.run("status").stdout
            info = alertmanager.running(up.state)
            assert info is not None and info.url == am_url
            up.pids.add(info.pid)
            prom = prometheus.running(up.state)
            assert prom is not None
            up.pids.add(prom.pid)
            up.wait("a ready replica", lambda: up.deployment("iris")["ready"] == 1, 90)

            with LoadClient(port, "iris", workers=1, pause_s=0.1, max_s=120) as load:
                fired = wait_for(
                    lambda: [
                        a
                        for a in hook.alerts()
                        if a["labels"]["alertname"] == "MlkubeHighLatencyP99"
                    ],
                    90,
                    "MlkubeHighLatencyP99 at the webhook",
                )
            assert load.codes[200] > 0 and load.failed == 0
            labels = fired[0]["labels"]
            assert labels["namespace"] == "default" and labels["deployment"] == "iris"
            assert labels["severity"] == "warning" and labels["team"] == "ml"
            assert fired[0]["annotations"]["runbook_url"].endswith("#mlkubehighlatencyp99")
            assert hook.paths[0] == "/alerts"

            down = up.run("down").stdout
            assert "alertmanager stopped" in down and "prometheus stopped" in down
            wait_for(lambda: not pid_alive(info.pid), 15, "alertmanager to exit")
            assert alertmanager.running(up.state) is None
        finally:
            prometheus.stop(up.state)
            alertmanager.stop(up.state)
            up.cleanup()
