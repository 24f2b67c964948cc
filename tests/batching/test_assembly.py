import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlkube.batching.assembly import merge_batches, rows_of, signature, split_outputs


def batch(rows: int, start: float = 0.0):
    return {"x": np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + start}


def test_signature_ignores_rows_but_not_dtype_or_width():
    assert signature(batch(1)) == signature(batch(5))
    assert signature(batch(1)) != signature({"x": np.zeros((1, 3), np.float64)})
    assert signature(batch(1)) != signature({"x": np.zeros((1, 4), np.float32)})


@given(st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=10))
def test_merge_then_split_round_trips(row_counts):
    parts = [batch(rows, start=i * 100) for i, rows in enumerate(row_counts)]
    merged = merge_batches(parts)
    assert rows_of(merged) == sum(row_counts)
    back = split_outputs(merged, row_counts)
    for original, returned in zip(parts, back, strict=True):
        np.testing.assert_array_equal(original["x"], returned["x"])


def test_split_refuses_outputs_with_the_wrong_row_count():
    with pytest.raises(ValueError, match="expected 3 rows"):
        split_outputs({"y": np.zeros(2)}, [1, 2])


def test_split_refuses_scalar_outputs():
    with pytest.raises(ValueError, match="output 'y'"):
        split_outputs({"y": np.asarray(np.float32(1.0))}, [1])
