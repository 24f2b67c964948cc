"""``LocalBackend`` over a scripted control API: what it asks the controller and returns."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.backends.base import ApplyReport, ObjectChange, ObjectRef
from mlkube.backends.local import backend as module
from mlkube.backends.local import supervisor
from mlkube.backends.local.backend import LocalBackend, RolloutFailedError
from mlkube.clock import ManualClock
from mlkube.errors import BackendError, UnsupportedOperationError

Answer = Callable[[str, dict[str, Any] | None], Any]


class ScriptedControl:
    """Answers control API calls from a table of (method, path) → answer; records the calls."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.pid = 4242
        self.answers = answers
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.closed = 0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        self.requests.append((method, path, body))
        answer = self.answers[(method, path.split("?", 1)[0])]
        return answer(path, body) if callable(answer) else answer

    def close(self) -> None:
        self.closed += 1


def backend_for(control: ScriptedControl, tmp_path: Path, clock: ManualClock | None = None):
    return LocalBackend(tmp_path, clock=clock or ManualClock(), connect=lambda _state: control)


def deployment(ready: int, stable: int, target: int | None, phase: str, reason: str = ""):
    return {
        "name": "iris",
        "namespace": "default",
        "ready": ready,
        "desired": 2,
        "rollout": {
            "stable": stable,
            "target": target,
            "strategy": "RollingUpdate",
            "phase": phase,
            "step": 0,
            "reason": reason,
        },
    }


def statuses(*deployments: dict[str, Any]) -> Answer:
    """``GET /status`` answering each of ``deployments`` in turn, then the last one again."""
    seen = list(deployments)

    def answer(_path: str, _body: dict[str, Any] | None) -> Any:
        dep = seen.pop(0) if len(seen) > 1 else seen[0]
        return {"controller": {"enforcement": "none"}, "deployments": [dep]}

    return answer


APPLIED = ApplyReport(
    changes=(ObjectChange(ObjectRef("modeldeployment", "default/iris"), "configured", 2),)
)


def test_apply_validates_then_posts_absolute_paths_and_maps_the_results(tmp_path, monkeypatch):
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris"},
                "spec": {"model": {"uri": "iris.onnx", "format": "onnx"}},
            }
        )
    )
    results = [
        {"kind": "ModelDeployment", "name": "default/iris", "action": "created", "revision": 1}
    ]
    control = ScriptedControl({("POST", "/apply"): {"results": results}})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "iris.onnx").write_bytes(b"a model")
    report = backend_for(control, tmp_path).apply(["iris.yaml"])
    assert control.requests == [("POST", "/apply", {"paths": [str(spec)]})]
    assert control.closed == 1
    assert report.changes == (
        ObjectChange(ObjectRef("modeldeployment", "default/iris"), "created", 1),
    )
    assert report.pruned is None and not report.dry_run


def _spec(tmp_path: Path, **spec: Any) -> Path:
    path = tmp_path / "spec.yaml"
    document = {"metadata": {"name": "iris"}, "spec": spec}
    path.write_text(yaml.safe_dump({"apiVersion": "mlkube.dev/v1alpha1",
                                    "kind": "ModelDeployment", **document}))  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("model", "message"),
    [
        pytest.param(
            {"uri": "pvc://claim/iris.onnx", "format": "onnx"},
            "spec.model.uri is unsupported on local",
            id="claim-without-host-path",
        ),
        pytest.param(
            {"uri": "./saved_model", "format": "tensorflow"},
            "model.uri: no file or folder at",
            id="missing-saved-model",
        ),
        pytest.param(
            {"uri": "./missing.onnx", "format": "onnx"},
            "model.uri: no file or folder at",
            id="missing-file",
        ),
    ],
)
def test_a_spec_that_cannot_run_locally_is_refused_before_anything_is_sent(
    tmp_path, model, message
):
    control = ScriptedControl({})
    with pytest.raises(BackendError, match=message):
        backend_for(control, tmp_path).apply([str(_spec(tmp_path, model=model))])
    assert control.requests == []


def test_apply_warns_what_the_local_backend_does_not_honour(tmp_path):
    (tmp_path / "iris.onnx").write_bytes(b"a model")
    spec = _spec(
        tmp_path,
        model={"uri": "iris.onnx", "format": "onnx"},
        placement={"nodeSelector": {"pool": "gpu"}},
    )
    results = [{"kind": "ModelDeployment", "name": "default/iris", "action": "created"}]
    control = ScriptedControl({("POST", "/apply"): {"results": results}})
    report = backend_for(control, tmp_path).apply([str(spec)])
    assert any("spec.placement is ignored on local" in w for w in report.warnings)


def test_a_local_dry_run_is_refused_before_anything_is_sent(tmp_path):
    control = ScriptedControl({})
    with pytest.raises(UnsupportedOperationError, match="mlkube validate SPEC"):
        backend_for(control, tmp_path).apply(["iris.yaml"], dry_run=True)
    assert control.requests == []


def test_wait_reports_progress_until_the_new_revision_serves_every_replica(tmp_path):
    control = ScriptedControl(
        {
            ("GET", "/status"): statuses(
                deployment(2, 1, 2, "Progressing"),
                deployment(1, 2, None, "Complete"),
                deployment(2, 2, None, "Complete"),
            )
        }
    )
    clock = ManualClock()
    messages: list[str] = []
    backend_for(control, tmp_path, clock).wait_for_rollouts(
        APPLIED, timeout_s=60, report=messages.append
    )
    assert messages == [
        "default/iris: RollingUpdate 1 → 2, step 0 (Progressing)",
        "default/iris: 1 of 2 ready",
        "default/iris: rolled out (revision 2, 2 ready)",
    ]
    assert clock.now == 1000.0 + 2 * module.WAIT_POLL_S


def test_wait_fails_when_the_rollout_ends_on_another_revision(tmp_path):
    control = ScriptedControl(
        {("GET", "/status"): statuses(deployment(2, 1, None, "RolledBack", "p99 too high"))}
    )
    with pytest.raises(RolloutFailedError, match=r"revision 2 did not roll out \(RolledBack\)"):
        backend_for(control, tmp_path).wait_for_rollouts(APPLIED, timeout_s=60, report=print)


def test_wait_gives_up_at_the_timeout(tmp_path):
    control = ScriptedControl({("GET", "/status"): statuses(deployment(2, 1, 2, "Progressing"))})
    with pytest.raises(RolloutFailedError, match="timed out after 3s waiting for default/iris"):
        backend_for(control, tmp_path).wait_for_rollouts(
            APPLIED, timeout_s=3, report=lambda _line: None
        )


NO_REPLICAS = {"controller": {"enforcement": "none"}, "deployments": []}


def with_replicas(*pids: int) -> dict[str, Any]:
    """``GET /status`` with one deployment whose replicas have ``pids``."""
    replicas = [{"name": f"iris-{pid}", "pid": pid} for pid in pids]
    return {"controller": {"enforcement": "none"}, "deployments": [{"replicas": replicas}]}


def test_delete_of_the_last_deployment_waits_for_the_controller(tmp_path, monkeypatch):
    answer = {"stopped": ["default/iris"], "controllerExiting": True, "prometheusStopped": True}
    control = ScriptedControl({("POST", "/down"): answer, ("GET", "/status"): NO_REPLICAS})
    alive = iter([True, True, False])
    monkeypatch.setattr(supervisor, "pid_alive", lambda pid: next(alive))
    report = backend_for(control, tmp_path).delete(None)
    assert control.requests == [("GET", "/status", None), ("POST", "/down", {})]
    assert [str(c.object) for c in report.changes] == ["modeldeployment/default/iris"]
    assert report.stopped_processes == ("prometheus", "controller")
    assert next(alive, "done") == "done"  # it polled until the controller had exited


def test_delete_returns_only_once_the_replica_processes_have_exited(tmp_path):
    # A replica still on its way out when the controller answers `POST /down` (the controller
    # answers after its own deadline, or right after SIGKILL): here a real process that exits
    # by itself a moment later. `down` must not return before it has.
    replica = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(1.5)"], start_new_session=True
    )
    try:
        answer = {"stopped": ["default/iris"], "controllerExiting": False}
        control = ScriptedControl(
            {("GET", "/status"): with_replicas(replica.pid), ("POST", "/down"): answer}
        )
        lines: list[str] = []
        backend = LocalBackend(tmp_path, connect=lambda _state: control)
        report = backend.delete("iris", timeout_s=60, report=lines.append)
        assert not supervisor.pid_alive(replica.pid)
        assert lines == [f"waiting for 1 process (pid {replica.pid}) to exit"]
        assert control.requests[0] == ("GET", "/status?name=iris", None)
        assert report.stopped_processes == ()
    finally:
        replica.kill()
        replica.wait()


def test_delete_names_what_still_runs_after_the_timeout(tmp_path, monkeypatch):
    answer = {"stopped": ["default/iris"], "controllerExiting": True}
    control = ScriptedControl(
        {("GET", "/status"): with_replicas(11, 12), ("POST", "/down"): answer}
    )
    monkeypatch.setattr(supervisor, "pid_alive", lambda pid: pid != 11)
    lines: list[str] = []
    with pytest.raises(BackendError) as raised:
        backend_for(control, tmp_path).delete(None, timeout_s=5, report=lines.append)
    assert str(raised.value).startswith(
        "2 processes (pids 12, 4242) still running 5s after `down`: the controller keeps "
        "stopping them (see "
    )
    assert lines == ["waiting for 2 processes (pids 12, 4242) to exit"]  # once, not every poll


def test_rollout_status_history_and_undo_map_the_control_api(tmp_path):
    control = ScriptedControl(
        {
            ("GET", "/rollout/status"): {
                "stable": 1,
                "target": 2,
                "strategy": "Canary",
                "phase": "Progressing",
                "step": 1,
                "weights": {"1": 90.0, "2": 10.0},
                "reason": "",
                "desired": 2,
            },
            ("GET", "/rollout/history"): [
                {
                    "revision": 1,
                    "created": 5.0,
                    "status": "Complete",
                    "reason": "",
                    "model": "a.onnx",
                    "current": True,
                }
            ],
            ("POST", "/rollout/undo"): {"name": "default/iris", "revision": 1, "action": "aborted"},
        }
    )
    backend = backend_for(control, tmp_path)
    status = backend.rollout_status("iris")
    assert (status.revision, status.target, status.weights) == (1, 2, (("1", 90.0), ("2", 10.0)))
    assert backend.rollout_history("iris")[0].model == "a.onnx"
    undo = backend.rollout_undo("iris", to_revision=1)
    assert (str(undo.object), undo.action, undo.revision) == (
        "modeldeployment/default/iris",
        "aborted",
        1,
    )
    assert control.requests[-1] == ("POST", "/rollout/undo", {"name": "iris", "revision": 1})
