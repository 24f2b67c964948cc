"""One shard in its own process: ``python -m mlkube.batch.worker PLAN SHARD PARENT_PID``.

Loads the model with the serving runtimes, predicts the shard's rows ``batchSize`` at a time
and writes the shard's file (atomically). A worker whose runner died (its parent pid changed:
the runner was killed) stops at the next batch and writes nothing, so a resumed run never
races an orphan. Any failure is one ``error: ...`` line on stderr and exit code 1: the runner
shows that line as the shard's reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson

from mlkube.batch.plan import BatchPlan, Shard
from mlkube.batch.rows import Rows, outputs_as_lists, read_rows, write_shard
from mlkube.errors import MlkubeError
from mlkube.runtimes.base import NUMPY_DTYPES, Runtime
from mlkube.runtimes.loader import load_runtime
from mlkube.spec import ModelDeployment

EXIT_FAILED = 1
EXIT_ORPHANED = 3


class OrphanedError(Exception):
    """The runner that started this worker is gone."""


def load_model(plan: BatchPlan) -> Runtime:
    """The plan's model, loaded by the runtime a deployment of it would use."""
    deployment = ModelDeployment.model_validate(
        {
            "apiVersion": "mlkube.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "batch"},
            "spec": {"model": plan.model.spec},
        }
    )
    return load_runtime(deployment)


def features(runtime: Runtime, rows: Rows, columns: Sequence[str]) -> dict[str, Any]:
    """The model's inputs from the rows: one input takes every column as a [rows, columns]
    matrix; several inputs take the column of their own name each."""
    inputs = runtime.inputs
    if len(inputs) == 1:
        spec = inputs[0]
        matrix = np.column_stack([np.asarray(rows.columns[c]) for c in columns])
        return {spec.name: _as(matrix, NUMPY_DTYPES[spec.datatype], rows, columns)}
    batch = {}
    for spec in inputs:
        if spec.name not in rows.columns:
            raise MlkubeError(
                f"the model's input '{spec.name}' is not among the columns "
                f"({', '.join(columns)}); name the columns after the model's inputs"
            )
        column = np.asarray(rows.columns[spec.name])
        batch[spec.name] = _as(
            column if len(spec.shape) == 1 else column.reshape(-1, 1),
            NUMPY_DTYPES[spec.datatype],
            rows,
            (spec.name,),
        )
    return batch


def _as(
    values: np.ndarray[Any, Any], dtype: Any, rows: Rows, columns: Sequence[str]
) -> np.ndarray[Any, Any]:
    """``values`` as the model's dtype, or an error naming the first row and column that
    does not convert (numpy's own message names neither)."""
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, TypeError) as error:
        kind = np.dtype(dtype)
        for column in columns:
            for identity, value in zip(rows.ids, rows.columns[column], strict=True):
                try:
                    np.asarray(value, dtype=kind)
                except (ValueError, TypeError):
                    raise MlkubeError(
                        f"row {identity}: column {column}: {value!r} is not {kind.name}"
                    ) from None
        raise MlkubeError(f"the rows do not convert to {kind.name}: {error}") from None


def run_shard(plan: BatchPlan, shard: Shard, parent: int | None = None) -> int:
    """Predict ``shard`` and write its file; the number of rows written."""
    runtime = load_model(plan)
    rows = read_rows(
        shard.file, shard.format, shard.start, shard.stop, plan.columns, plan.id_column
    )
    outputs: dict[str, list[Any]] = {}
    for start in range(0, len(rows.ids), plan.batch_size):
        if parent is not None and os.getppid() != parent:
            raise OrphanedError
        stop = start + plan.batch_size
        part = Rows(rows.ids[start:stop], {c: v[start:stop] for c, v in rows.columns.items()})
        predicted = outputs_as_lists(runtime.predict(features(runtime, part, plan.columns)))
        for name, values in predicted.items():
            outputs.setdefault(name, []).extend(values)
    if parent is not None and os.getppid() != parent:
        raise OrphanedError
    target = Path(plan.output_dir) / shard.output_name(plan.output_format)
    write_shard(target, plan.output_format, plan.output_id_column, rows.ids, outputs)
    return len(rows.ids)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    plan_path, index, parent = args[0], int(args[1]), int(args[2])
    try:
        plan = BatchPlan.from_json(orjson.loads(Path(plan_path).read_bytes()))
        shard = plan.shards[index]
        written = run_shard(plan, shard, parent)
    except OrphanedError:
        _say("error: the batch runner is gone; stopped without writing")
        return EXIT_ORPHANED
    except (MlkubeError, OSError, ValueError, KeyError) as error:
        _say(f"error: {error}")
        return EXIT_FAILED
    except Exception as error:  # the model's own library failed: still one line, for the runner
        _say(f"error: {type(error).__name__}: {error}")
        return EXIT_FAILED
    _say(f"{shard.name}: {written} rows")
    return 0


def _say(line: str, stream: TextIO | None = None) -> None:
    """One line to a stream (a process entry point: the CLI's output module is not here)."""
    out = stream or sys.stderr
    out.write(line + "\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
