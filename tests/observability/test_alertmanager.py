"""The local Alertmanager: its config, the user's own file, the `alerting:` block of
Prometheus, private files, and a firing rule that reaches a real webhook through a real
Prometheus and a real Alertmanager (Debian's binaries; skipped only when they are absent).
"""

from __future__ import annotations

import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.backends.local import alertmanager, daemon, prometheus
from mlkube.backends.local.supervisor import pid_alive
from mlkube.errors import BackendError

from .conftest import deployment, tool
from .promclient import wait_for
from .webhook import WebhookReceiver

ALWAYS_FIRING = {
    "groups": [
        {
            "name": "test-only",
            "rules": [
                {
                    "alert": "MlkubeTestAlwaysFiring",
                    "expr": "vector(1) > 0",
                    "for": "0s",
                    "labels": {"severity": "warning", "namespace": "ml", "deployment": "iris"},
                    "annotations": {"summary": "fires as soon as it is evaluated"},
                }
            ],
        }
    ]
}


def alertmanager_binary() -> str:
    """Debian's prometheus-alertmanager (or an alertmanager on PATH), else a skip."""
    try:
        return alertmanager.find_binary()
    except alertmanager.AlertmanagerNotInstalledError:
        return tool("prometheus-alertmanager")  # skips, saying what to install


def user_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


# the config ------------------------------------------------------------------------------
def test_webhook_config_routes_every_alert_to_every_url():
    config = alertmanager.webhook_config(["http://127.0.0.1:9000/a", "https://hooks.example/b"])
    route = config["route"]
    assert route["receiver"] == "mlkube-webhooks"
    assert route["group_by"] == ["alertname", "namespace", "deployment"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "10s",
        "1m",
        "4h",
    )
    (receiver,) = config["receivers"]
    assert receiver["name"] == "mlkube-webhooks"
    assert receiver["webhook_configs"] == [
        {"url": "http://127.0.0.1:9000/a", "send_resolved": True},
        {"url": "https://hooks.example/b", "send_resolved": True},
    ]


def test_the_group_wait_of_the_webhook_config_can_be_set_from_the_environment():
    assert alertmanager.group_wait_from({}) == 10.0
    assert alertmanager.group_wait_from({"MLKUBE_ALERT_GROUP_WAIT_S": "0.5"}) == 0.5
    config = alertmanager.webhook_config(
        ["http://127.0.0.1:9000/a"],
        group_wait_s=alertmanager.group_wait_from({"MLKUBE_ALERT_GROUP_WAIT_S": "1"}),
    )
    assert config["route"]["group_wait"] == "1s"
    for bad in ("0", "-1", "soon"):
        with pytest.raises(BackendError, match="MLKUBE_ALERT_GROUP_WAIT_S must be a positive"):
            alertmanager.group_wait_from({"MLKUBE_ALERT_GROUP_WAIT_S": bad})


@pytest.mark.parametrize("url", ["127.0.0.1:9000/alerts", "ftp://host/x", "http://", "hooks"])
def test_a_webhook_that_is_not_an_http_url_is_refused(url):
    with pytest.raises(BackendError, match="is not an http\\(s\\) URL"):
        alertmanager.webhook_config([url])


@pytest.mark.integration  # runs amtool from Debian's prometheus-alertmanager
def test_amtool_check_config_accepts_the_webhook_config(tmp_path):
    amtool = tool("amtool")
    layout = alertmanager.write_config(
        tmp_path, alertmanager.webhook_config(["http://127.0.0.1:9000/alerts"])
    )
    done = subprocess.run(
        [amtool, "check-config", str(layout.config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_users_own_config_is_taken_as_it_is(tmp_path):
    config = {
        "route": {"receiver": "team", "routes": [{"receiver": "pager", "matchers": ["a=b"]}]},
        "receivers": [{"name": "team"}, {"name": "pager"}],
        "inhibit_rules": [],
    }
    assert alertmanager.user_config(user_file(tmp_path, config)) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("route: {}\n  receiver: x: y\n", "is not valid YAML (line 2)"),
        ("- a list\n", "expected a mapping"),
        ("receivers: []\n", "needs route.receiver"),
        ("route: {receiver: team}\n", "route.receiver 'team' is not one of receivers (none)"),
        (
            "route: {receiver: team}\nreceivers: [{name: other}]\n",
            "route.receiver 'team' is not one of receivers (other)",
        ),
    ],
)
def test_a_wrong_user_config_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    with pytest.raises(BackendError) as raised:
        alertmanager.user_config(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_binary_says_how_to_install_it(tmp_path):
    with pytest.raises(alertmanager.AlertmanagerNotInstalledError, match="apt-get install"):
        alertmanager.find_binary(str(tmp_path / "no-alertmanager"))


def test_files_are_private_since_receivers_carry_keys(tmp_path):
    layout = alertmanager.write_config(
        tmp_path, alertmanager.webhook_config(["https://hooks.example/T0/secret"])
    )
    assert stat.S_IMODE(layout.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(layout.config.stat().st_mode) == 0o600
    prom = prometheus.write_config(tmp_path, [deployment()])
    assert stat.S_IMODE(prom.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(prom.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(prom.rules.stat().st_mode) == 0o600


def test_private_files_are_replaced_whole_by_writers_at_once(tmp_path):
    """An apply and an `up` may rewrite prometheus.yml at the same moment."""
    target = tmp_path / "prometheus.yml"
    texts = [f"writer {i}\n" * 1000 for i in range(6)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(30):
                daemon.write_private(target, text)
        except BaseException as error:  # collected: the assertion below names it
            errors.append(error)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert target.read_text() in texts
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["prometheus.yml"]  # no temporary left


def test_prometheus_sends_alerts_only_where_an_alertmanager_is_given(tmp_path):
    base: dict[str, Any] = {"targets_file": tmp_path / "t.json", "rule_files": []}
    assert "alerting" not in prometheus.prometheus_config(**base)
    config = prometheus.prometheus_config(**base, alertmanager_target="127.0.0.1:9093")
    assert config["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]
    }
    # Without a running Alertmanager in the state directory, none is configured.
    layout = prometheus.write_config(tmp_path, [deployment()])
    assert "alerting" not in yaml.safe_load(layout.config.read_text())


def test_stop_without_an_alertmanager_is_false(tmp_path):
    assert alertmanager.stop(tmp_path) is False
    assert alertmanager.running(tmp_path) is None


# real processes ----------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_a_config_alertmanager_refuses_fails_the_start_with_its_words(tmp_path):
    binary = alertmanager_binary()
    config = {
        "route": {"receiver": "hook"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": "::not-a-url"}]}],
    }
    with pytest.raises(BackendError) as raised:
        alertmanager.start_or_reload(tmp_path, config, binary=binary, timeout_s=20)
    assert "alertmanager did not become ready" in str(raised.value)
    assert "alertmanager.log" in str(raised.value)
    assert alertmanager.running(tmp_path) is None


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_firing_rule_reaches_a_webhook_through_prometheus_and_alertmanager(tmp_path):
    """The user's own alertmanager.yml (short group_wait), the alerting block that
    ``prometheus.write_config`` adds, a rule that fires at its first evaluation."""
    prom_binary = tool("prometheus")
    am_binary = alertmanager_binary()
    with WebhookReceiver() as hook, WebhookReceiver() as second:
        config: dict[str, Any] = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url}]}],
        }
        checked = alertmanager.user_config(user_file(tmp_path, config))
        state = tmp_path / "state"
        try:
            action, am = alertmanager.start_or_reload(state, checked, binary=am_binary)
            assert action == "started"
            assert am.url.startswith("http://127.0.0.1:") and alertmanager.running(state) == am
            layout = prometheus.write_config(state, [deployment()], scrape_interval_s=1)
            written = yaml.safe_load(layout.config.read_text())
            targets = written["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
            assert targets == [f"127.0.0.1:{am.port}"]
            # A test-only rule file next to the generated one: fires at once, every time.
            extra = tmp_path / "always.yml"
            extra.write_text(yaml.safe_dump(ALWAYS_FIRING))
            written["rule_files"].append(str(extra))
            layout.config.write_text(yaml.safe_dump(written))
            prometheus.start(state, binary=prom_binary)

            (alert, *_) = wait_for(hook.alerts, 40, "the alert at the webhook")
            assert alert["labels"] == {
                "alertname": "MlkubeTestAlwaysFiring",
                "severity": "warning",
                "namespace": "ml",
                "deployment": "iris",
            }
            assert alert["annotations"]["summary"] == "fires as soon as it is evaluated"
            message = hook.messages[0]
            assert message["receiver"] == "hook" and message["status"] == "firing"
            assert message["externalURL"] == am.url  # links in notifications point here
            assert hook.paths[0] == "/alerts"

            # `up` again with another receiver: the same process reloads its config. (A new
            # name: Alertmanager remembers what it sent to "hook" until repeat_interval.)
            config["route"]["receiver"] = "second"
            config["receivers"] = [{"name": "second", "webhook_configs": [{"url": second.url}]}]
            action, again = alertmanager.start_or_reload(state, config, binary=am_binary)
            assert (action, again.pid) == ("reloaded", am.pid)
            wait_for(second.alerts, 40, "the alert at the new webhook")

            # A config Alertmanager refuses leaves the running one as it was, and says so.
            config["receivers"] = [{"name": "second", "webhook_configs": [{"url": "::bad"}]}]
            with pytest.raises(BackendError, match="alertmanager refused the new config"):
                alertmanager.start_or_reload(state, config, binary=am_binary)
            assert alertmanager.running(state) == am
        finally:
            prometheus.stop(state)
            stopped = alertmanager.stop(state)
    assert stopped is True
    assert alertmanager.running(state) is None and not pid_alive(am.pid)
    # Everything Alertmanager and we wrote (config, log, silences, notification log) is
    # this user's only: receivers carry keys.
    folder = alertmanager.Layout.of(state).folder
    modes = {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
        for p in [folder, *folder.rglob("*")]
    }
    assert {"alertmanager.yml", "alertmanager.log", "data"} <= modes.keys()
    assert len(modes) > 4  # Alertmanager's own files under data/ too
    assert all(mode == (0o700 if (folder / p).is_dir() else 0o600) for p, mode in modes.items()), (
        modes
    )


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parents[2] / "deploy" / "alertmanager").glob("*.yml")),
    ids=lambda p: p.name,
)
def test_the_shipped_routing_examples_pass_as_the_users_own_config(path):
    """`up --alertmanager-config deploy/alertmanager/slack.yml` (docs/alerts.md) is accepted."""
    assert alertmanager.user_config(path)["route"]["receiver"]
