"""``datatype_of`` answers from a table for the common dtypes; every dtype gets the answer the
plain scan of ``NUMPY_DTYPES`` gives (byte order, strings and objects included)."""

from __future__ import annotations

import numpy as np
import pytest

from mlkube.runtimes.base import NUMPY_DTYPES, Datatype, datatype_of


def scanned(dtype: np.dtype) -> Datatype:
    for datatype, numpy_dtype in NUMPY_DTYPES.items():
        if datatype is not Datatype.BYTES and np.dtype(numpy_dtype) == dtype:
            return datatype
    return Datatype.BYTES


@pytest.mark.parametrize(
    "dtype",
    [np.dtype(t) for t in NUMPY_DTYPES.values()]
    + [np.dtype(t) for t in (">f4", ">i8", "<u2", "=f8", "U3", "S2", "O", "c8", "M8[s]", "V4")],
    ids=str,
)
def test_datatype_of_matches_the_scan(dtype: np.dtype) -> None:
    assert datatype_of(dtype) is scanned(dtype)


def test_common_output_dtypes() -> None:
    assert datatype_of(np.zeros(1, np.float32).dtype) is Datatype.FP32
    assert datatype_of(np.zeros(1, np.int64).dtype) is Datatype.INT64
    assert datatype_of(np.zeros(1, bool).dtype) is Datatype.BOOL
    assert datatype_of(np.zeros(1, object).dtype) is Datatype.BYTES
