"""A TrainingJob's gang of real worker processes (``job_runner``): distributed training with
torch.distributed (gloo, CPU) across 2 local workers matches a single process; a worker that
dies restarts the whole group within backoffLimit, then the job fails with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlkube.backends.local.decisions.jobs import JobPhase
from mlkube.backends.local.job_runner import JobPaths, read_metrics, run_to_end, worker_argv
from mlkube.clock import SystemClock
from mlkube.spec import TrainingJob, parse_documents

pytest.importorskip("torch")
pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent / "data" / "ddp_train.py"


def _job(workers: int, **spec: Any) -> TrainingJob:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "ddp"},
        "spec": {"run": {"script": str(SCRIPT)}, "workers": workers, **spec},
    }
    (job,) = parse_documents(json.dumps(document))
    assert isinstance(job, TrainingJob)
    return job


def _run(job: TrainingJob, where: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []
    paths = JobPaths(where / "logs", where / "out")
    state = run_to_end(job, paths, SystemClock(), on_event=lambda *e: events.append(e))
    return str(state.phase), state.reason, events


def test_two_workers_train_what_one_process_trains(tmp_path: Path) -> None:
    single = _job(1)
    phase, _, _ = _run(single, tmp_path / "one")
    assert phase == "Succeeded"
    pair = _job(2)
    phase, reason, _ = _run(pair, tmp_path / "two")
    assert phase == "Succeeded", reason
    one = json.loads((tmp_path / "one" / "out" / "weights.json").read_text())
    two = json.loads((tmp_path / "two" / "out" / "weights.json").read_text())
    assert two == pytest.approx(one, abs=1e-5)
    assert read_metrics(pair, tmp_path / "two" / "out")["steps"] == 30.0
    for rank in (0, 1):
        assert (tmp_path / "two" / "logs" / f"worker-{rank}.log").exists()


def test_a_killed_worker_restarts_the_group_within_backoff_limit(tmp_path: Path) -> None:
    job = _job(2, backoffLimit=3, env={"KILL_RANK": "1", "KILL_ATTEMPTS": "1"})
    phase, reason, events = _run(job, tmp_path)
    assert phase == "Succeeded", reason
    failed = [e for e in events if e[1] == "WorkerFailed"]
    # The killed worker restarts the group; on a loaded machine a later attempt may also miss
    # its rendezvous, which backoffLimit absorbs too.
    assert "worker 1 exited with killed by signal 9" in failed[0][2]
    assert "restart 1 of backoffLimit 3" in failed[0][2]


def test_a_worker_that_keeps_dying_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    job = _job(2, backoffLimit=1, env={"KILL_RANK": "0", "KILL_ATTEMPTS": "99"})
    phase, reason, events = _run(job, tmp_path)
    assert phase == str(JobPhase.FAILED)
    assert reason == (
        "BackoffLimitExceeded: worker 0 exited with killed by signal 9 (backoffLimit 1 reached)"
    )
    assert [e[1] for e in events].count("WorkerFailed") == 1


def test_a_module_job_runs_with_python_dash_m() -> None:
    (job,) = parse_documents(
        "apiVersion: mlkube.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: m}\n"
        "spec: {run: {module: pkg.train, args: ['--epochs', '2']}}\n"
    )
    assert isinstance(job, TrainingJob)
    assert worker_argv(job)[1:] == ["-m", "pkg.train", "--epochs", "2"]
