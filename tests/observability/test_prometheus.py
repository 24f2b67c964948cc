"""The local Prometheus: config checked by promtool, start, file_sd following targets, stop."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mlkube.backends.local import prometheus
from mlkube.errors import BackendError

from .conftest import deployment, tool
from .promclient import Prom, wait_for


def test_config_points_file_sd_at_the_targets_and_loads_the_rules(tmp_path):
    layout = prometheus.write_config(
        tmp_path, [deployment({"monitoring": {"scrapeInterval": "5s"}})]
    )
    config = yaml.safe_load(layout.config.read_text())
    job = config["scrape_configs"][0]
    assert job["file_sd_configs"][0]["files"] == [str(tmp_path / "prometheus" / "targets.json")]
    assert job["honor_labels"] is True
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == [str(layout.rules)]
    rules = yaml.safe_load(layout.rules.read_text())
    assert rules["groups"][0]["name"] == "mlkube.ml.iris"
    assert json.loads(layout.targets.read_text()) == []


def test_the_controller_job_is_added_when_asked():
    config = prometheus.prometheus_config(
        targets_file=Path("/t.json"), rule_files=[], controller_target="127.0.0.1:7000"
    )
    assert config["scrape_configs"][1]["static_configs"] == [{"targets": ["127.0.0.1:7000"]}]


def test_existing_targets_are_kept(tmp_path):
    targets = tmp_path / "prometheus" / "targets.json"
    targets.parent.mkdir()
    targets.write_text('[{"targets": ["127.0.0.1:1"]}]')
    prometheus.write_config(tmp_path, [])
    assert json.loads(targets.read_text()) == [{"targets": ["127.0.0.1:1"]}]


@pytest.mark.integration  # runs a Prometheus tool
def test_promtool_check_config_accepts_it(tmp_path):
    promtool = tool("promtool")
    layout = prometheus.write_config(tmp_path, [deployment()], controller_target="127.0.0.1:7000")
    result = subprocess.run(
        [promtool, "check", "config", str(layout.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_binary_says_how_to_install_it(tmp_path):
    prometheus.write_config(tmp_path, [])
    with pytest.raises(prometheus.PrometheusNotInstalledError, match="apt-get install prometheus"):
        prometheus.start(tmp_path, binary=str(tmp_path / "no-prometheus"))


def test_start_needs_a_config(tmp_path):
    tool("prometheus")
    with pytest.raises(BackendError, match="call write_config first"):
        prometheus.start(tmp_path)


def test_stop_without_a_prometheus_is_false(tmp_path):
    assert prometheus.stop(tmp_path) is False
    assert prometheus.running(tmp_path) is None
    assert prometheus.reload(tmp_path) is False


@pytest.mark.integration
def test_start_follow_targets_reload_and_stop(tmp_path):
    binary = tool("prometheus")
    layout = prometheus.write_config(tmp_path, [deployment()], scrape_interval_s=1)
    info = prometheus.start(tmp_path, binary=binary)
    try:
        assert info.url.startswith("http://127.0.0.1:")
        assert prometheus.running(tmp_path) == info
        assert prometheus.start(tmp_path, binary=binary) == info  # idempotent
        prom = Prom(info.url)
        assert prom.targets() == []
        # The controller rewrites targets.json as replicas come and go: Prometheus follows.
        # Prometheus's own /metrics stands in for a replica here.
        group = {
            "targets": [f"127.0.0.1:{info.port}"],
            "labels": {
                "namespace": "ml",
                "deployment": "iris",
                "replica": "iris-0",
                "revision": "1",
            },
        }
        layout.targets.write_text(json.dumps([group]))
        wait_for(lambda: [t for t in prom.targets() if t["health"] == "up"], 20, "target up")
        target = prom.targets()[0]
        assert target["labels"]["deployment"] == "iris" and target["labels"]["replica"] == "iris-0"
        layout.targets.write_text("[]")
        wait_for(lambda: prom.targets() == [], 20, "target gone")
        # The deployment's group, and the job alerts the controller always has.
        assert {g["name"] for g in prom.rules()} == {"mlkube.ml.iris", "mlkube.jobs"}
        prometheus.write_config(tmp_path, [deployment(), deployment(name="other")])
        assert prometheus.reload(tmp_path) is True
        wait_for(lambda: len(prom.rules()) == 3, 10, "reloaded rules")
    finally:
        stopped = prometheus.stop(tmp_path)
    assert stopped is True
    assert prometheus.running(tmp_path) is None
    assert not layout.info.exists()
