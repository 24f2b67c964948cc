"""Reading input rows (CSV, JSON lines, Parquet) and writing a shard's predictions.

CSV and JSON lines use the standard library and orjson; Parquet needs pyarrow (the
``parquet`` extra), imported only when a Parquet file is read or written. A shard's output is
written under a temporary name and renamed when complete, so a file with the final name is
always whole.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from mlkube.batch.plan import TEMP_MARK
from mlkube.errors import MlkubeError
from mlkube.spec.job import InputFormat

FILE_MODE = 0o644


class BatchInputError(MlkubeError):
    """An input file cannot be read as its format says, or lacks a column."""


@dataclass(frozen=True, slots=True)
class Rows:
    """Some rows of one file: their ids and their feature values, column by column."""

    ids: list[Any]
    columns: dict[str, list[Any]]


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise BatchInputError("Parquet needs pyarrow: pip install 'mlkube[parquet]'") from error
    return pq


def count_rows(path: str, fmt: InputFormat) -> int:
    """How many data rows ``path`` holds (a CSV header is not a row; blank lines are none)."""
    if fmt is InputFormat.PARQUET:
        return int(_pyarrow_parquet().ParquetFile(path).metadata.num_rows)
    with open(path, newline="" if fmt is InputFormat.CSV else None, encoding="utf-8") as stream:
        if fmt is InputFormat.CSV:
            reader = csv.reader(stream)
            next(reader, None)
            return sum(1 for row in reader if row)
        return sum(1 for line in stream if line.strip())


def column_names(path: str, fmt: InputFormat) -> list[str]:
    """The columns of ``path``: a CSV header, a Parquet schema, a JSON line's keys."""
    if fmt is InputFormat.PARQUET:
        return list(_pyarrow_parquet().ParquetFile(path).schema_arrow.names)
    with open(path, newline="", encoding="utf-8") as stream:
        if fmt is InputFormat.CSV:
            return next(csv.reader(stream), [])
        for line in stream:
            if line.strip():
                return list(_json_object(line, path, 1).keys())
    return []


def _json_object(line: str, path: str, number: int) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise BatchInputError(f"{path}: row {number} is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise BatchInputError(f"{path}: row {number} is not a JSON object")
    return value


def _records(path: str, fmt: InputFormat, start: int, stop: int) -> Iterator[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as stream:
        if fmt is InputFormat.CSV:
            rows = (row for row in csv.DictReader(stream) if any(row.values()))
            yield from itertools.islice(rows, start, stop)
            return
        lines = (line for line in stream if line.strip())
        for number, line in enumerate(itertools.islice(lines, start, stop), start + 1):
            yield _json_object(line, path, number)


def read_rows(
    path: str,
    fmt: InputFormat,
    start: int,
    stop: int,
    columns: Sequence[str],
    id_column: str | None,
) -> Rows:
    """Rows ``start`` to ``stop`` of ``path``: ``columns`` and the ids (``id_column``, else
    ``FILE:ROW`` with ROW counted from 0)."""
    if fmt is InputFormat.PARQUET:
        wanted = [*columns, *([id_column] if id_column else [])]
        table = _pyarrow_parquet().read_table(path, columns=wanted).slice(start, stop - start)
        data = table.to_pydict()
        found = data.pop(id_column) if id_column else _positions(path, start, stop)
        return Rows(found, {c: data[c] for c in columns})
    values: dict[str, list[Any]] = {c: [] for c in columns}
    ids: list[Any] = []
    for number, record in enumerate(_records(path, fmt, start, stop), start):
        try:
            for column in columns:
                values[column].append(record[column])
            ids.append(record[id_column] if id_column else f"{Path(path).name}:{number}")
        except KeyError as error:
            raise BatchInputError(f"{path}: row {number} has no column {error}") from None
    return Rows(ids, values)


def _positions(path: str, start: int, stop: int) -> list[Any]:
    name = Path(path).name
    return [f"{name}:{n}" for n in range(start, stop)]


# writing ---------------------------------------------------------------------------------
def _cells(output: np.ndarray[Any, Any]) -> list[Any]:
    return [v.decode() if isinstance(v, bytes) else v for v in output.tolist()]


def write_shard(
    path: Path, fmt: str, id_column: str, ids: Sequence[Any], outputs: dict[str, list[Any]]
) -> None:
    """Write one shard's rows (``id_column`` first, then each output) to ``path`` atomically."""
    temp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        if fmt == "parquet":
            pq = _pyarrow_parquet()
            import pyarrow as pa

            pq.write_table(pa.table({id_column: list(ids), **outputs}), str(temp))
        else:
            with open(temp, "wb") as stream:
                (_write_csv if fmt == "csv" else _write_jsonl)(stream, id_column, ids, outputs)
                stream.flush()
                os.fsync(stream.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def _write_jsonl(
    stream: IO[bytes], id_column: str, ids: Sequence[Any], outputs: dict[str, list[Any]]
) -> None:
    names = list(outputs)
    for row, identity in enumerate(ids):
        record = {id_column: identity, **{name: outputs[name][row] for name in names}}
        stream.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def _write_csv(
    stream: IO[bytes], id_column: str, ids: Sequence[Any], outputs: dict[str, list[Any]]
) -> None:
    """A vector output becomes one column per element (``probabilities_0``, ...)."""
    header = [id_column]
    for name, values in outputs.items():
        first = values[0] if values else None
        header += [f"{name}_{i}" for i in range(len(first))] if isinstance(first, list) else [name]
    text = _TextWriter(stream)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row, identity in enumerate(ids):
        cells: list[Any] = [identity]
        for values in outputs.values():
            value = values[row]
            cells.extend(value if isinstance(value, list) else [value])
        writer.writerow(cells)


class _TextWriter:
    """csv.writer writes str; the shard file is binary (for fsync on one descriptor)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(text.encode())


def outputs_as_lists(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, list[Any]]:
    """Model outputs as plain values per row (vectors as lists, bytes as text)."""
    return {name: _cells(np.asarray(array)) for name, array in outputs.items()}
