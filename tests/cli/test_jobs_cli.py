"""``mlkube run``, ``jobs`` and ``cancel`` through the backend seam (the FakeBackend)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from mlkube.backends.base import JobRow
from mlkube.cli import cli
from mlkube.cli.jobs import JOBS_HEADER, job_line, outcome_line
from mlkube.testing.fake_backend import FakeBackend


def run(fake: FakeBackend, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj={"backend_factory": fake.factory})


def test_run_submits_and_wait_follows_to_the_outcome(tmp_path: Path) -> None:
    job = tmp_path / "train.yaml"
    job.write_text("kind: TrainingJob\n", encoding="utf-8")
    fake = FakeBackend(log_lines=("epoch 1 loss 0.5",))
    submitted = run(fake, "run", str(job))
    assert submitted.stdout == "trainingjob/train submitted\n"
    followed = run(fake, "run", str(job), "--wait", "--interval", "0")
    assert followed.exit_code == 0, followed.output
    assert followed.stdout.splitlines()[1:3] == ["job/train: Running", "job/train: Succeeded"]
    assert followed.stdout.splitlines()[-1] == "job train Succeeded; accuracy=0.97"


def test_run_wait_exits_1_when_the_job_fails(tmp_path: Path) -> None:
    job = tmp_path / "train.yaml"
    job.write_text("kind: TrainingJob\n", encoding="utf-8")
    fake = FakeBackend()
    fake.job_outcome = "Failed"
    followed = run(fake, "run", str(job), "--wait", "--interval", "0")
    assert followed.exit_code == 1
    assert "job train Failed; worker 0 exited with code 1" in followed.stdout


def test_jobs_prints_a_table_or_a_document_and_cancel_says_what_it_did(tmp_path: Path) -> None:
    job = tmp_path / "train.yaml"
    job.write_text("kind: TrainingJob\n", encoding="utf-8")
    fake = FakeBackend()
    run(fake, "run", str(job))
    table = run(fake, "jobs").stdout.splitlines()
    assert table[0] == JOBS_HEADER
    assert table[1].startswith("train                Running")
    rows = json.loads(run(fake, "jobs", "train", "-o", "json").stdout)
    assert rows[0]["name"] == "train"
    assert run(fake, "cancel", "train").stdout == "job/train: Cancelled\n"


def test_a_job_line_fits_80_columns_whatever_the_reason() -> None:
    row = JobRow(
        "a-very-long-job-name-indeed", "TrainingJob", "Queued", 8, 1000, 0.0, reason="x" * 200
    )
    line = job_line(row, now=7300.0)
    assert len(line) == 80 and line.endswith("…")
    assert " 2h  " in line


def test_the_outcome_names_restarts_reason_metrics_and_model() -> None:
    row = JobRow(
        "train",
        "TrainingJob",
        "Succeeded",
        2,
        0,
        0.0,
        started=10.0,
        finished=52.0,
        restarts=1,
        metrics=(("loss", 0.0123),),
        model_version="iris/3",
    )
    assert outcome_line(row) == (
        "job train Succeeded in 42s; 1 restart(s), 0 preemption(s); loss=0.0123; model iris/3"
    )
