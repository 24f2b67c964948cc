"""The controller's observability glue without processes: deployment → metric state, log
rotation and log tails of a Controller, the tokenless /metrics route, and the CLI pieces."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from mlkube.backends.local import prometheus
from mlkube.backends.local.controller.controller import Controller, err_path
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.metrics import deployment_state, exposition, new_metrics
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.proxy import Router
from mlkube.backends.local.status_view import autoscaler_line
from mlkube.cli import cli
from mlkube.desired.rollout import RolloutPhase, RolloutState
from mlkube.errors import BackendError
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.loading import parse_documents
from mlkube.testing.control_api import served


def doc(**spec: Any) -> ModelDeployment:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"model": {"uri": "/models/iris.onnx", "format": "onnx"}, **spec},
    }
    (parsed,) = parse_documents(yaml.safe_dump(document))
    assert isinstance(parsed, ModelDeployment)
    return parsed


def deployment(phases: list[Phase], **spec: Any) -> Deployment:
    d = doc(**spec)
    dep = Deployment(
        key="ml/iris",
        doc=d,
        router=Router("ml/iris", hold_s=1.0),
        rollout=RolloutState(stable=1),
        desired=len(phases),
    )
    dep.revisions[1] = d
    for i, phase in enumerate(phases):
        dep.replicas[f"iris-1-{i}"] = Replica(f"iris-1-{i}", 1, 0, 0.0, phase=phase)
    return dep


def test_deployment_state_counts_phases_and_reads_the_last_decision():
    dep = deployment(
        [Phase.READY, Phase.READY, Phase.STARTING, Phase.BACKOFF],
        autoscaling={"minReplicas": 2, "maxReplicas": 6},
    )
    dep.desired = 5
    dep.last_decision = {
        "desiredReplicas": 5,
        "reason": "cpu above target",
        "metrics": {"cpu_utilization": 91.5, "desired_by_cpu": 5},
    }
    state = deployment_state(dep)
    assert (state.namespace, state.name, state.desired, state.ready) == ("ml", "iris", 5, 2)
    assert state.phases == {"Ready": 2, "Starting": 1, "CrashLoopBackOff": 1}
    assert (state.min_replicas, state.max_replicas) == (2, 6)
    assert state.autoscaler_desired == 5
    assert state.autoscaler_inputs == {"cpu_utilization": 91.5, "desired_by_cpu": 5.0}
    assert state.rollout_phase == "Complete"
    assert state.canary_weight == 0.0 and state.canary_revision is None


def test_canary_share_is_the_target_weight_over_all_weights():
    dep = deployment([Phase.READY] * 3)
    dep.rollout = RolloutState(stable=1, target=2, phase=RolloutPhase.PROGRESSING)
    dep.weights = {1: 70.0, 2: 30.0}
    state = deployment_state(dep)
    assert state.canary_weight == pytest.approx(0.3)
    assert (state.stable_revision, state.canary_revision) == (1, 2)
    assert state.rollout_phase == "Progressing"
    assert state.min_replicas is None and state.autoscaler_desired is None
    dep.rollout = RolloutState(stable=1, target=2, phase=RolloutPhase.FAILED)
    assert deployment_state(dep).canary_weight == 0.0  # a failed rollout routes nothing new


def test_exposition_reads_the_live_deployments_and_forgets_deleted_ones():
    deps = {"ml/iris": deployment([Phase.READY])}
    metrics = new_metrics(lambda: deps.values())
    metrics.restart("ml", "iris", "killed by SIGKILL")
    metrics.decision("ml", "iris", before=1, after=3)

    def samples() -> dict[tuple[str, str], float]:
        text = exposition(metrics).decode()
        return {
            (s.name, s.labels.get("reason") or s.labels.get("direction") or ""): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.labels.get("deployment") == "iris" and "phase" not in s.labels
        }

    first = samples()
    assert first[("mlkube_deployment_ready_replicas", "")] == 1
    assert first[("mlkube_replica_restarts_total", "Signal")] == 1
    assert first[("mlkube_autoscaler_decisions_total", "up")] == 1
    deps["ml/iris"].desired = 4
    assert samples()[("mlkube_deployment_desired_replicas", "")] == 4
    del deps["ml/iris"]
    metrics.forget("ml", "iris")
    assert samples() == {}


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    ctrl = Controller(tmp_path, ControllerSettings())
    yield ctrl
    ctrl.store.close()


def test_rotate_logs_rotates_the_log_and_err_files_at_max_size(controller):
    dep = deployment([Phase.READY], logging={"files": {"maxSize": "1Ki", "backups": 2}})
    controller.deployments[dep.key] = dep
    log = controller.log_path(dep, "iris-1-0")
    log.parent.mkdir(parents=True)
    line = json.dumps({"ts": "2026-01-01T00:00:00.000Z", "msg": "x" * 100}) + "\n"
    for _round in range(3):
        log.write_text(line * 20)
        err_path(log).write_text("small\n")
        controller.rotate_logs()
    assert log.stat().st_size == 0
    assert [p.name for p in sorted(log.parent.iterdir())] == [
        "iris-1-0.err",
        "iris-1-0.log",
        "iris-1-0.log.1",
        "iris-1-0.log.2",  # three rotations, two backups kept
    ]


def test_log_tail_prefers_the_error_on_stderr_over_progress_lines(controller):
    dep = deployment([Phase.STARTING])
    log = controller.log_path(dep, "iris-1-0")
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"ts": "2026-01-01T00:00:00Z", "msg": "loading model"}) + "\n")
    err_path(log).write_text("mlkube serve: iris (onnx) listening on http://x\n")
    assert controller.log_tail(dep, "iris-1-0") == "loading model"
    with err_path(log).open("a") as err:
        err.write("error: cannot load '/models/iris.onnx' as onnx: bad protobuf\n")
    assert controller.log_tail(dep, "iris-1-0").startswith("error: cannot load")


@pytest.mark.integration
async def test_metrics_need_no_token_and_everything_else_still_does(controller):
    def fetch(port: int, path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read()

    async with served(controller, metrics=lambda: b"mlkube_up 1\n") as client:
        status, kind, body = await asyncio.to_thread(fetch, client.port, "/metrics")
        assert (status, body) == (200, b"mlkube_up 1\n")
        assert kind.startswith("text/plain")
        status, _, body = await asyncio.to_thread(fetch, client.port, "/status")
        assert status == 401 and b"token" in body
        client.token = "wrong"  # noqa: S105 - a deliberately wrong token
        with pytest.raises(BackendError, match="missing or wrong token"):
            await asyncio.to_thread(client.call, "POST", "/down", {})


def test_autoscaler_line_says_why_the_count_is_what_it_is():
    dep = {
        "name": "iris",
        "desired": 3,
        "autoscaler": {
            "desiredReplicas": 3,
            "reason": "cpu 83% above the 70% target",
            "metrics": {"cpu_utilization": 83.333, "desired_by_cpu": 3},
            "limitedBy": "maxReplicas",
        },
    }
    assert autoscaler_line(dep) == (
        "iris: autoscaler wants 3 (desired 3): cpu 83% above the 70% target "
        "[cpu_utilization=83.33, desired_by_cpu=3]; limited by maxReplicas"
    )
    assert autoscaler_line({"name": "iris", "desired": 1, "autoscaler": None}) is None


def write_log(path: Path, entries: list[tuple[str, str]]) -> None:
    path.write_text(
        "".join(
            json.dumps({"ts": ts, "msg": msg, "replica": path.name}) + "\n" for ts, msg in entries
        )
    )


def test_logs_merges_replicas_and_rotated_files_in_time_order(tmp_path):
    folder = tmp_path / "logs" / "ml" / "iris"
    folder.mkdir(parents=True)
    write_log(folder / "iris-1-a.log.2", [("2026-01-01T00:00:01.000Z", "a1")])
    write_log(folder / "iris-1-a.log.1", [("2026-01-01T00:00:04.000Z", "a4")])
    write_log(folder / "iris-1-a.log", [("2026-01-01T00:00:06.000Z", "a6")])
    write_log(
        folder / "iris-1-b.log",
        [("2026-01-01T00:00:02.000Z", "b2"), ("2026-01-01T00:00:05.000Z", "b5")],
    )
    (folder / "iris-1-b.err").write_text("mlkube serve: not JSON, never shown\n")
    runner = CliRunner()
    done = runner.invoke(cli, ["logs", "iris", "--state-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    messages = [json.loads(line)["msg"] for line in done.output.splitlines()]
    assert messages == ["a1", "b2", "a4", "b5", "a6"]


def test_up_with_prometheus_fails_before_starting_anything_without_the_binary(
    tmp_path, monkeypatch
):
    # The edge we cannot reach otherwise: a machine without Prometheus (it is installed here).
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(prometheus, "DEFAULT_BINARY", str(tmp_path / "no-prometheus"))
    spec = tmp_path / "iris.yaml"
    spec.write_text(yaml.safe_dump(doc().model_dump(mode="json", by_alias=True)))
    state = tmp_path / "state"
    done = CliRunner().invoke(
        cli, ["up", "-d", "--prometheus", str(spec), "--state-dir", str(state)]
    )
    # main() prints MlkubeErrors as `error: ...` (exit 1); the runner hands back the error.
    assert isinstance(done.exception, prometheus.PrometheusNotInstalledError)
    assert "apt-get install prometheus" in str(done.exception)
    assert not state.exists(), "no controller was started"
