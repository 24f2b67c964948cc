"""Merge several requests' inputs into one batch and split the outputs back.

Pure: no I/O, no clock. Requests merge only when every input has the same dtype and the same
shape after the batch axis; ``signature`` says whether two requests can share a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlkube.runtimes.base import Array, Batch

Signature = tuple[tuple[str, str, tuple[int, ...]], ...]


def signature(batch: Batch) -> Signature:
    """What must be equal for two batches to be concatenated along the batch axis."""
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in batch.items())


def rows_of(batch: Batch) -> int:
    """Rows in a batch (the first axis of its first input; 1 for a scalar input)."""
    for array in batch.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


def merge_batches(batches: Sequence[Batch]) -> Batch:
    """One batch holding every row of ``batches`` in order. All must share a signature."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    return {name: np.concatenate([batch[name] for batch in batches]) for name in first}


def split_outputs(outputs: Batch, row_counts: Sequence[int]) -> list[Batch]:
    """``outputs`` of a merged batch cut back into one batch per request, in order.

    Raises ValueError when an output's rows do not add up to the rows that went in.
    """
    total = sum(row_counts)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            shape = tuple(array.shape)
            raise ValueError(f"output '{name}' has shape {shape}, expected {total} rows")
    if len(row_counts) == 1:
        return [outputs]
    parts: list[Batch] = []
    offset = 0
    for rows in row_counts:
        parts.append({name: _rows(array, offset, rows) for name, array in outputs.items()})
        offset += rows
    return parts


def _rows(array: Array, offset: int, rows: int) -> Array:
    return array[offset : offset + rows]
