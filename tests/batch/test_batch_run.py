"""Batch inference with real worker processes: equal outputs, resume after SIGKILL, retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import psutil
import pytest

from mlkube.batch.__main__ import main as batch_main
from mlkube.batch.plan import Progress
from mlkube.batch.runner import BatchError, output_lock, run_batch
from mlkube.registry import Registry, registry_root

from .conftest import COLUMNS, BatchSetup, assert_matches, read_outputs

pytestmark = pytest.mark.integration


def test_100000_rows_by_2_workers_equal_in_process_predictions(setup: BatchSetup):
    setup.write_csv()
    seen: list[Progress] = []
    result = run_batch(
        setup.job(workers=2, shardRows=20_000, batchSize=1024), on_progress=seen.append
    )
    assert (result.shards, result.ran, result.skipped, result.rows) == (5, 5, 0, 100_000)
    assert_matches(read_outputs(setup.folder / "out"), setup.expected(), 100_000)
    assert seen[-1].shards_done == 5
    assert seen[-1].rows_done == 100_000
    assert seen[-1].rows_per_s > 0
    assert max(p.running for p in seen) <= 2
    assert not [p for p in (setup.folder / "out").iterdir() if p.name.startswith(".part-")]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("part-*")}


def _wait(what: str, predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_run_resumes_without_redoing_finished_shards(setup: BatchSetup):
    setup.write_csv()
    spec = setup.spec(workers=2, shardRows=5_000, batchSize=500)  # 20 shards
    out = setup.folder / "out"
    runner = subprocess.Popen(
        [sys.executable, "-m", "mlkube.batch", str(spec), "--plain"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait("2 finished shards", lambda: len(_snapshot(out)) >= 2 if out.exists() else False)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
    finally:
        if runner.poll() is None:
            runner.kill()
    # The orphaned workers notice their runner is gone and stop, leaving no half-written file.
    _wait("orphans to stop", lambda: not list(out.glob(".part-*")), timeout_s=30)
    time.sleep(0.5)  # a worker that was still loading its model stops at its first batch
    _wait("orphans to stop", lambda: not list(out.glob(".part-*")), timeout_s=30)
    before = _snapshot(out)
    assert 2 <= len(before) < 20, before

    result = run_batch(setup.job(workers=2, shardRows=5_000, batchSize=500))

    assert result.skipped == len(before)
    assert result.ran == 20 - len(before) < 20
    after = _snapshot(out)
    assert {name: after[name] for name in before} == before  # not rewritten: same inode, mtime
    assert len(after) == 20
    assert_matches(read_outputs(out), setup.expected(), 100_000)


def test_a_poisoned_shard_is_retried_then_fails_the_job_with_its_reason(setup: BatchSetup):
    rows = setup.rows[:300]
    path = setup.write_csv(rows=rows)
    lines = path.read_text().splitlines()
    lines[151] = "r150,oops,1,1,1"  # row 150: in shard 1 (rows 100-199)
    path.write_text("\n".join(lines) + "\n")
    job = setup.job(workers=2, shardRows=100, backoffLimit=1)
    with pytest.raises(BatchError) as failed:
        run_batch(job)
    message = str(failed.value)
    assert "shard part-00001 (rows.csv rows 100-199) failed 2 times (backoffLimit 1)" in message
    assert "row r150: column sepal_length: 'oops' is not float32" in message
    log = (setup.folder / "out/.mlkube/logs/part-00001.log").read_text()
    assert log.count("'oops' is not float32") == 2
    assert not (setup.folder / "out/part-00001.jsonl").exists()


def test_a_registered_version_and_csv_output(setup: BatchSetup, monkeypatch):
    monkeypatch.delenv("MLKUBE_REGISTRY", raising=False)
    state = setup.folder / "state"
    Registry(registry_root(state)).register("iris", setup.model.path, "onnx")
    setup.write_csv(rows=setup.rows[:1000])
    job = setup.job(
        model={"uri": "models:/iris/latest", "format": "onnx"},
        output={"path": "out", "format": "csv"},
        shardRows=400,
    )
    result = run_batch(job, state_dir=state)
    assert result.shards == 3
    lines = (setup.folder / "out/part-00000.csv").read_text().splitlines()
    assert lines[0] == "row_id,label,probabilities_0,probabilities_1,probabilities_2"
    expected = setup.expected()
    assert lines[1].split(",")[:2] == ["r0", str(int(expected["label"][0]))]


def test_a_changed_plan_is_refused_not_mixed(setup: BatchSetup):
    setup.write_csv(rows=setup.rows[:200])
    run_batch(setup.job(shardRows=100))
    with pytest.raises(BatchError, match=r"holds shards of another run \(shardRows changed\)"):
        run_batch(setup.job(shardRows=50))


def test_jsonl_input_with_default_ids(setup: BatchSetup):
    path = setup.folder / "input" / "rows.jsonl"
    path.parent.mkdir(parents=True)
    names = ("a", "b", "c", "d")
    rounded = np.round(setup.rows[:10], 3)
    path.write_bytes(
        b"".join(orjson.dumps(dict(zip(names, r.tolist(), strict=True))) + b"\n" for r in rounded)
    )
    result = run_batch(setup.job(input={"path": "input/rows.jsonl"}, shardRows=4))
    assert result.shards == 3
    records = read_outputs(setup.folder / "out")
    assert [r["id"] for r in records] == [f"rows.jsonl:{i}" for i in range(10)]
    assert [r["label"] for r in records] == setup.expected()["label"][:10].tolist()


def test_parquet_in_and_out(setup: BatchSetup):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rounded = np.round(setup.rows[:500], 3)
    folder = setup.folder / "input"
    folder.mkdir()
    columns = {name: rounded[:, i] for i, name in enumerate(COLUMNS)}
    ids = [f"r{i}" for i in range(500)]
    pq.write_table(pa.table({"row_id": ids, **columns}), folder / "rows.parquet")
    job = setup.job(output={"path": "out", "format": "parquet"}, shardRows=200)
    assert run_batch(job).shards == 3
    table = pa.concat_tables(
        [pq.read_table(p) for p in sorted((setup.folder / "out").glob("part-*.parquet"))]
    )
    assert table.column("row_id").to_pylist() == ids
    assert table.column("label").to_pylist() == setup.expected()["label"][:500].tolist()


def test_the_entry_point_reports_progress_and_errors(setup: BatchSetup, capsys):
    setup.write_csv(rows=setup.rows[:300])
    spec = setup.spec(shardRows=100)
    assert batch_main([str(spec), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    events = [orjson.loads(line) for line in out[:-1]]
    assert events[-1]["shardsDone"] == events[-1]["shardsTotal"] == 3
    assert events[-1]["rowsDone"] == 300
    assert out[-1].startswith("default/score: 3 shards, 300 rows: 3 predicted now, 0 already")
    assert batch_main([str(spec), "--plain"]) == 0  # again: nothing left to do
    captured = capsys.readouterr()
    assert "3/3 shards, 300/300 rows" in captured.err
    assert "0 predicted now, 3 already done" in captured.out
    assert batch_main([str(spec), "--plain", "--name", "default/score"]) == 0
    assert batch_main([str(spec), "--name", "other"]) == 1
    assert capsys.readouterr().err.endswith("no BatchInference document named other\n")
    (setup.folder / "input/rows.csv").unlink()
    assert batch_main([str(spec)]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: input.path: no files at ")


def test_sigterm_stops_the_workers_and_a_rerun_resumes(setup: BatchSetup):
    setup.write_csv()
    spec = setup.spec(workers=2, shardRows=5_000, batchSize=500)
    out = setup.folder / "out"
    runner = subprocess.Popen(
        [sys.executable, "-m", "mlkube.batch", str(spec), "--plain"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait("a finished shard", lambda: len(_snapshot(out)) >= 1 if out.exists() else False)
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130
    assert "error: interrupted; run it again to resume" in err
    plan = str(out / ".mlkube" / "plan.json")
    workers = [p for p in psutil.process_iter(["cmdline"]) if plan in (p.info["cmdline"] or [])]
    assert workers == []  # the runner killed its workers and waited for them before exiting
    assert not list(out.glob(".part-*"))
    before = _snapshot(out)
    result = run_batch(setup.job(workers=2, shardRows=5_000, batchSize=500))
    assert result.skipped == len(before)
    assert_matches(read_outputs(out), setup.expected(), 100_000)


def test_a_second_run_at_the_same_time_is_refused(setup: BatchSetup):
    setup.write_csv(rows=setup.rows[:10])
    in_use = rf"out is in use by another run .*pid {os.getpid()}"
    with output_lock(setup.folder / "out"), pytest.raises(BatchError, match=in_use):
        run_batch(setup.job())
    assert run_batch(setup.job()).ran == 1  # released with its holder
