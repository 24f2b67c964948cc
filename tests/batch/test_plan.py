"""Planning a batch job, without processes: shards, what is left, when a plan changed."""

from typing import Any

from mlkube.batch.plan import (
    BatchPlan,
    InputFile,
    ModelRef,
    Progress,
    input_format,
    is_temporary,
    plan_differences,
    plan_shards,
    remaining,
)
from mlkube.spec.job import InputFormat

CSV = InputFormat.CSV


def _file(path: str, rows: int) -> InputFile:
    return InputFile(path, CSV, rows, size=rows * 10, mtime_ns=1)


def test_shards_cut_each_file_and_never_span_two():
    shards = plan_shards([_file("a.csv", 25), _file("b.csv", 10), _file("c.csv", 0)], 10)
    assert [(s.index, s.file, s.start, s.stop) for s in shards] == [
        (0, "a.csv", 0, 10),
        (1, "a.csv", 10, 20),
        (2, "a.csv", 20, 25),
        (3, "b.csv", 0, 10),
    ]
    assert sum(s.rows for s in shards) == 35
    assert shards[2].output_name("jsonl") == "part-00002.jsonl"


def test_only_shards_without_a_file_are_left():
    shards = plan_shards([_file("a.csv", 50)], 10)
    present = {"part-00000.jsonl", "part-00003.jsonl", ".part-00001.jsonl.tmp-77", "part-00002.csv"}
    assert [s.index for s in remaining(shards, present, "jsonl")] == [1, 2, 4]
    assert remaining(shards, {s.output_name("csv") for s in shards}, "csv") == ()


def test_half_written_files_are_recognised():
    assert is_temporary(".part-00001.jsonl.tmp-77")
    assert not is_temporary("part-00001.jsonl")
    assert not is_temporary(".part-notes")


def test_format_from_the_suffix_unless_declared():
    assert input_format("x/DATA.CSV", None) is CSV
    assert input_format("x/a.parquet", None) is InputFormat.PARQUET
    assert input_format("x/a.jsonl", None) is InputFormat.JSON_LINES
    assert input_format("x/a.txt", None) is None
    assert input_format("x/a.txt", CSV) is CSV


def _plan(**change) -> BatchPlan:
    values: dict[str, Any] = {
        "files": (_file("a.csv", 30),),
        "shard_rows": 10,
        "batch_size": 4,
        "model": ModelRef("/m.onnx", "onnx", "models:/m/1", {"uri": "/m.onnx"}),
        "output_dir": "/out",
        "output_format": "jsonl",
        "id_column": None,
        "columns": ("x", "y"),
    }
    values.update(change)
    return BatchPlan(**values)


def test_a_plan_survives_json_and_its_identity_ignores_speed_only_settings():
    plan = _plan()
    assert BatchPlan.from_json(plan.to_json()) == plan
    assert plan_differences(plan.identity(), _plan(batch_size=64).identity()) == []
    assert plan_differences(plan.identity(), _plan(shard_rows=5).identity()) == ["shardRows"]
    changed = _plan(files=(_file("a.csv", 31),), columns=("x",)).identity()
    assert plan_differences(plan.identity(), changed) == ["input.columns", "the input files"]


def test_rate_counts_only_this_runs_rows():
    progress = Progress(10, 6, 4, 100, 60, 20, elapsed_s=2.0)
    assert progress.rows_per_s == 10.0
    assert Progress(1, 0, 0, 1, 0, 0, elapsed_s=0.0).rows_per_s == 0.0
