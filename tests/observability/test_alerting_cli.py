"""`mlkube up`'s alerting options refuse what cannot work in one line, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlkube.backends.local import alertmanager
from mlkube.cli import main
from mlkube.cli.observability import print_monitoring

from .conftest import tool

SPEC = {
    "apiVersion": "mlkube.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {"model": {"uri": "./iris.onnx", "format": "onnx"}},
}


def up(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``mlkube up -d ARGS SPEC`` as the entry point runs it: exit code, what it printed."""
    spec = tmp_path / "iris.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    state = tmp_path / "state"
    with pytest.raises(SystemExit) as exited:
        main(["up", "-d", "--state-dir", str(state), *args, str(spec)])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out + captured.err


def assert_nothing_started(tmp_path: Path) -> None:
    assert not (tmp_path / "state" / "controller.json").exists()
    assert not (tmp_path / "state" / "alertmanager").exists()


def test_a_webhook_without_prometheus_is_a_usage_error(tmp_path, capsys):
    code, output = up(tmp_path, capsys, "--alert-webhook", "http://127.0.0.1:9000/alerts")
    assert code == 2
    assert "--alert-webhook and --alertmanager-config go with --prometheus" in output
    assert_nothing_started(tmp_path)


def test_a_webhook_and_a_config_file_together_is_a_usage_error(tmp_path, capsys):
    tool("prometheus")
    own = tmp_path / "am.yml"
    own.write_text("route: {receiver: x}\nreceivers: [{name: x}]\n")
    code, output = up(
        tmp_path,
        capsys,
        "--prometheus",
        "--alert-webhook",
        "http://h/",
        "--alertmanager-config",
        str(own),
    )
    assert code == 2
    assert "use --alert-webhook or --alertmanager-config, not both" in output
    assert_nothing_started(tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--alert-webhook", "127.0.0.1:9000"), "alert webhook '127.0.0.1:9000' is not an http(s)"),
        (("--alertmanager-config", "{own}"), "route.receiver 'x' is not one of receivers"),
    ],
)
def test_a_wrong_receiver_is_one_line_and_starts_nothing(tmp_path, capsys, args, message):
    tool("prometheus")
    own = tmp_path / "am.yml"
    own.write_text("route: {receiver: x}\nreceivers: [{name: y}]\n")
    code, output = up(tmp_path, capsys, "--prometheus", *(a.format(own=own) for a in args))
    assert code == 1
    (line,) = [line for line in output.splitlines() if line.strip()]
    assert line.startswith("error: ") and message in line
    assert_nothing_started(tmp_path)


def test_up_prints_where_each_listens_and_where_the_alerts_go(capsys):
    answer = {
        "url": "http://127.0.0.1:9090",
        "action": "reloaded",
        "alertmanagerUrl": "http://127.0.0.1:9093",
        "alertmanagerAction": "started",
    }
    own = Path(__file__).parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
    print_monitoring(answer, {"config": alertmanager.user_config(own)})
    assert capsys.readouterr().out.splitlines() == [
        "prometheus reloaded: http://127.0.0.1:9090",
        "alertmanager started: http://127.0.0.1:9093",
        "  alerts to receiver slack-ml: slack",
        "  alerts to receiver pagerduty-ml: pagerduty",
        "  alerts to receiver email-ml-team: email",
    ]
    print_monitoring({"url": "http://127.0.0.1:9090", "action": "started"}, None)
    assert capsys.readouterr().out == "prometheus started: http://127.0.0.1:9090\n"
