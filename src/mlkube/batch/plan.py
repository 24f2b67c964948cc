"""What a batch job does, before anything runs: shards of input rows and which are left. Pure.

A shard is ``shardRows`` consecutive rows of one input file (shards never span two files, so
a worker reads one file). Shard ``i`` writes ``part-0000i.FORMAT`` in the output folder; the
file appears only once complete (written under a temporary name, then renamed), so "its file
exists" is "it is done", and a resumed run plans only the shards whose file is missing. The
plan itself is written beside them (``PLAN_FILE``): a run whose inputs, model, columns or
shard size differ from the plan in the folder is refused rather than mixed with old shards.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mlkube.spec.job import InputFormat

SUFFIXES = {
    ".csv": InputFormat.CSV,
    ".parquet": InputFormat.PARQUET,
    ".pq": InputFormat.PARQUET,
    ".jsonl": InputFormat.JSON_LINES,
    ".ndjson": InputFormat.JSON_LINES,
}
STATE_DIR = ".mlkube"
"""Inside the output folder: the plan and the workers' logs."""
PLAN_FILE = "plan.json"
TEMP_MARK = ".tmp-"
"""In the name of a shard file still being written (``.part-00003.jsonl.tmp-PID``)."""
DEFAULT_ID_COLUMN = "id"


def input_format(path: str, declared: InputFormat | None) -> InputFormat | None:
    """``declared``, else the format the file's suffix says (None when it says none)."""
    if declared is not None:
        return declared
    lowered = path.lower()
    return next((f for s, f in SUFFIXES.items() if lowered.endswith(s)), None)


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file as planned: its identity (size, mtime) and its number of rows."""

    path: str
    format: InputFormat
    rows: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Shard:
    """Rows ``start`` to ``stop`` (exclusive) of ``file``, the ``index``-th shard of the job."""

    index: int
    file: str
    format: InputFormat
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def output_name(self, output_format: str) -> str:
        return f"{self.name}.{output_format}"


def plan_shards(files: Sequence[InputFile], shard_rows: int) -> tuple[Shard, ...]:
    """Every file cut into shards of ``shard_rows`` rows (the last of a file may be shorter)."""
    if shard_rows < 1:
        raise ValueError("shard_rows must be at least 1")
    shards: list[Shard] = []
    for file in files:
        for part in range(math.ceil(file.rows / shard_rows)):
            start = part * shard_rows
            stop = min(start + shard_rows, file.rows)
            shards.append(Shard(len(shards), file.path, file.format, start, stop))
    return tuple(shards)


def remaining(
    shards: Sequence[Shard], present: Collection[str], output_format: str
) -> tuple[Shard, ...]:
    """The shards whose output file is not among ``present`` (names in the output folder)."""
    return tuple(s for s in shards if s.output_name(output_format) not in present)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a shard file a worker had not finished (left by an interruption)."""
    return name.startswith(".part-") and TEMP_MARK in name


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The model as the workers load it: the file (a registry URI already resolved)."""

    path: str
    format: str
    uri: str
    """What the spec said (``models:/iris/2``, ``model.onnx``), for messages."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The spec's ``model`` section (JSON, camelCase), with ``uri`` set to ``path``."""


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Everything a worker needs, and what a resumed run must agree with."""

    files: tuple[InputFile, ...]
    shard_rows: int
    batch_size: int
    model: ModelRef
    output_dir: str
    output_format: str
    id_column: str | None
    columns: tuple[str, ...]

    @property
    def shards(self) -> tuple[Shard, ...]:
        return plan_shards(self.files, self.shard_rows)

    @property
    def output_id_column(self) -> str:
        return self.id_column or DEFAULT_ID_COLUMN

    def identity(self) -> dict[str, Any]:
        """What decides the shards' contents: a resumed run must match it exactly (the batch
        size is left out: it changes speed, not results)."""
        data = self.to_json()
        data.pop("batchSize")
        data["model"].pop("spec")
        return data

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [{**asdict(f), "format": str(f.format)} for f in self.files],
            "shardRows": self.shard_rows,
            "batchSize": self.batch_size,
            "model": asdict(self.model),
            "outputDir": self.output_dir,
            "outputFormat": self.output_format,
            "idColumn": self.id_column,
            "columns": list(self.columns),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchPlan:
        files = tuple(
            InputFile(f["path"], InputFormat(f["format"]), f["rows"], f["size"], f["mtime_ns"])
            for f in data["files"]
        )
        return cls(
            files=files,
            shard_rows=int(data["shardRows"]),
            batch_size=int(data["batchSize"]),
            model=ModelRef(**data["model"]),
            output_dir=str(data["outputDir"]),
            output_format=str(data["outputFormat"]),
            id_column=data["idColumn"],
            columns=tuple(data["columns"]),
        )


def plan_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The top-level fields of two plan identities that differ (for the refusal message)."""
    names = {
        "files": "the input files",
        "shardRows": "shardRows",
        "model": "the model",
        "outputFormat": "output.format",
        "idColumn": "input.idColumn",
        "columns": "input.columns",
        "outputDir": "output.path",
    }
    return [names.get(k, k) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a run is: for a progress bar (shards) and a rate (rows per second)."""

    shards_total: int
    shards_done: int
    """Finished, including those a previous run finished."""
    shards_skipped: int
    """Finished by a previous run (not redone)."""
    rows_total: int
    rows_done: int
    rows_this_run: int
    elapsed_s: float
    retries: int = 0
    running: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.rows_this_run / self.elapsed_s if self.elapsed_s > 0 else 0.0
