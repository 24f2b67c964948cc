"""Checks shared by runtime and server tests: load a built model, compare batched answers."""

from __future__ import annotations

import numpy as np

from mlkube.runtimes import Batch, Runtime, load_runtime
from mlkube.spec import load_spec
from mlkube.testing.models import BuiltModel, Rows, write_spec


def serve(built: BuiltModel) -> Runtime:
    """Load ``built`` the way the server does: through a spec file and `load_runtime`."""
    return load_runtime(load_spec(write_spec(built)))


def merged_and_per_row(runtime: Runtime, rows: Rows | np.ndarray) -> tuple[Batch, Batch]:
    """The answers for ``rows`` in one predict call, and stacked from one call per row."""
    name = runtime.inputs[0].name
    merged = runtime.predict({name: rows})
    singles = [runtime.predict({name: rows[i : i + 1]}) for i in range(len(rows))]
    per_row = {
        spec.name: np.concatenate([single[spec.name] for single in singles])
        for spec in runtime.outputs
    }
    return merged, per_row


def assert_batch_invariant(runtime: Runtime, rows: Rows | np.ndarray, exact: bool = True) -> None:
    """Merged-rows predict equals row-by-row predicts: bit for bit, or to float rounding."""
    merged, per_row = merged_and_per_row(runtime, rows)
    if list(merged) != list(per_row):
        raise AssertionError(f"outputs differ: {list(merged)} != {list(per_row)}")
    for name, expected in per_row.items():
        if exact or not np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_array_equal(merged[name], expected, err_msg=name)
        else:
            assert_close(merged[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def assert_close(
    actual: object, expected: object, rtol: float = 1e-7, atol: float = 0.0, err_msg: str = ""
) -> None:
    """`numpy.testing.assert_allclose` for any numeric array-likes, compared as float64."""
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )
