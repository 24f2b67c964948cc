"""End to end on a real controller: TrainingJobs queued by priority and quota, a job preempted
by a higher-priority one (SIGTERM, requeued, then run again), and the CLI that follows them
(``mlkube run --wait``, ``mlkube jobs``, ``mlkube logs job/NAME``, ``mlkube cancel``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.backends.local.controller.api import Client
from mlkube.backends.local.controller.placement import machine_capacity
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.testing.local import LocalController

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent / "data" / "sleepy_job.py"
PRIORITIES = """
apiVersion: mlkube.dev/v1alpha1
kind: PriorityClass
metadata: {name: high}
spec: {value: 1000}
---
apiVersion: mlkube.dev/v1alpha1
kind: PriorityClass
metadata: {name: low}
spec: {value: 10}
"""


def _job(
    tmp: Path,
    name: str,
    priority: str,
    seconds: float,
    release: Path | None = None,
    **requests: str,
) -> str:
    env = {"JOB_SECONDS": str(seconds)}
    if release is not None:
        env["JOB_RELEASE_FILE"] = str(release)  # done as soon as the test creates it
    document: dict[str, Any] = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "run": {"script": str(SCRIPT)},
            "env": env,
            "resources": {"requests": requests},
            "placement": {"priorityClassName": priority},
            "output": {"path": f"out-{name}"},
            "terminationGracePeriod": "5s",
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return str(path)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalController]:
    controller = LocalController(tmp_path / "state")
    (tmp_path / "priorities.yaml").write_text(PRIORITIES, encoding="utf-8")
    yield controller
    controller.cleanup()


def _jobs(local: LocalController) -> dict[str, dict[str, Any]]:
    data = Client(local.state).call("GET", "/jobs")
    return {row["name"]: row for row in data["jobs"]}


def _reasons(row: dict[str, Any]) -> list[str]:
    return [event["reason"] for event in row["events"]]


def test_the_high_priority_job_runs_first_and_the_other_waits_for_the_quota(
    local: LocalController, tmp_path: Path
) -> None:
    quota = tmp_path / "quota.yaml"
    quota.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: Quota\nmetadata: {name: q, namespace: ml}\n"
        "spec: {hard: {requests.cpu: '1'}}\n",
        encoding="utf-8",
    )
    local.run("up", "-d", str(quota), str(tmp_path / "priorities.yaml"))
    low = _job(tmp_path, "low", "low", 1.0, cpu="1")
    release_high = tmp_path / "release-high"
    high = _job(tmp_path, "high", "high", 60.0, release_high, cpu="1")
    submitted = local.run("run", low, high)
    assert "trainingjob/ml/low submitted" in submitted.stdout
    rows = _jobs(local)
    assert rows["high"]["phase"] == "Running"
    assert rows["low"]["phase"] == "Queued"
    assert "exceeded quota in namespace 'ml': requests.cpu" in rows["low"]["reason"]
    table = local.run("jobs").stdout
    assert table.splitlines()[1].startswith("low ")  # queued first, with why it waits
    assert "exceeded quota" in table
    assert all(len(line) <= 80 for line in table.splitlines())
    release_high.touch()  # high ran all along; now it may finish and give low the quota
    local.wait(
        "both jobs to succeed",
        lambda: all(r["phase"] == "Succeeded" for r in _jobs(local).values()),
    )
    rows = _jobs(local)
    assert rows["high"]["finished"] <= rows["low"]["started"]
    assert "Waiting" in _reasons(rows["low"]) and "Admitted" in _reasons(rows["low"])
    assert rows["low"]["metrics"] == {"accuracy": 0.9, "seconds": 1.0}
    logs = local.run("logs", "job/low", "--worker", "0").stdout
    assert "working for 1.0s" in logs and "done" in logs


def test_a_higher_priority_job_preempts_and_the_preempted_one_runs_again(
    local: LocalController, tmp_path: Path
) -> None:
    settings = ControllerSettings()
    capacity = machine_capacity(settings.cpu_reserve_millis, settings.memory_reserve_bytes)
    memory = str(int(capacity.memory_bytes * 0.6))  # one of them fits, not two
    local.run("up", "-d", str(tmp_path / "priorities.yaml"))
    low = _job(tmp_path, "low", "low", 60.0, memory=memory)
    local.run("run", low)
    local.wait("low to run", lambda: _jobs(local)["low"]["phase"] == "Running")
    high = _job(tmp_path, "high", "high", 1.0, memory=memory)
    followed = local.run("run", high, "--wait", "--interval", "0.2")
    assert "job high Succeeded" in followed.stdout
    rows = _jobs(local)
    assert rows["low"]["preemptions"] == 1
    assert "Preempted" in _reasons(rows["low"])
    assert "preempted by job ml/high (priority 1000)" in json.dumps(rows["low"]["events"])
    local.wait("low to run again", lambda: _jobs(local)["low"]["phase"] == "Running")
    logs = local.run("logs", "job/low").stdout
    assert "checkpoint: SIGTERM received" in logs  # told through the signal, so it can save
    assert logs.count("working for 60.0s") == 2
    cancelled = local.run("cancel", "low")
    assert "job/low: Cancelled" in cancelled.stdout
    local.wait("low's workers to stop", lambda: _jobs(local)["low"]["phase"] == "Cancelled")


def test_run_wait_exits_1_and_says_why_when_the_job_fails(
    local: LocalController, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: broken}\n"
        "spec: {run: {module: no_such_module_here}, backoffLimit: 1}\n",
        encoding="utf-8",
    )
    done = local.run("run", str(broken), "--wait", "--interval", "0.2", check=False)
    assert done.returncode == 1
    assert "BackoffLimitExceeded: worker 0 exited with code 1" in done.stdout
    assert "No module named no_such_module_here" in done.stdout  # worker 0's log, streamed
