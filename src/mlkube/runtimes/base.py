"""The runtime contract: what every model runtime provides to the server.

A runtime is loaded once per replica process, then ``predict`` is called with a batch: a dict of
input name → numpy array whose first axis is the batch (rows). It returns a dict of output
name → numpy array with the same number of rows, in the order of ``outputs``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]
Batch = dict[str, Array]


class Datatype(enum.StrEnum):
    """Open Inference Protocol v2 tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


NUMPY_DTYPES: dict[Datatype, npt.DTypeLike] = {
    Datatype.BOOL: np.bool_,
    Datatype.UINT8: np.uint8,
    Datatype.UINT16: np.uint16,
    Datatype.UINT32: np.uint32,
    Datatype.UINT64: np.uint64,
    Datatype.INT8: np.int8,
    Datatype.INT16: np.int16,
    Datatype.INT32: np.int32,
    Datatype.INT64: np.int64,
    Datatype.FP16: np.float16,
    Datatype.FP32: np.float32,
    Datatype.FP64: np.float64,
    Datatype.BYTES: np.object_,
}


_BY_DTYPE: dict[np.dtype[np.generic], Datatype] = {
    np.dtype(numpy_dtype): datatype
    for datatype, numpy_dtype in NUMPY_DTYPES.items()
    if datatype is not Datatype.BYTES
}


def datatype_of(dtype: np.dtype[np.generic]) -> Datatype:
    """The v2 datatype of a numpy dtype (strings and objects are BYTES)."""
    found = _BY_DTYPE.get(dtype)  # the common dtypes at once: this runs per answered output
    if found is not None:
        return found
    for datatype, numpy_dtype in NUMPY_DTYPES.items():
        if datatype is not Datatype.BYTES and np.dtype(numpy_dtype) == dtype:
            return datatype
    return Datatype.BYTES


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: name, v2 datatype and shape (-1 marks a dynamic axis).

    The first axis is the batch axis and is always -1.
    """

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": str(self.datatype), "shape": list(self.shape)}


class Runtime(Protocol):
    """A loaded model, ready to predict."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def supports_batching(self) -> bool:
        """True when predict on N merged rows equals N separate predicts, row for row."""
        ...

    @property
    def runs_user_code(self) -> bool:
        """True when predict runs the user's own Python, which may sleep, wait or loop on one
        input: such calls never run on the server's event loop (library calls that are fast
        may)."""
        ...

    @property
    def platform(self) -> str:
        """Short name of the library behind it, e.g. ``onnxruntime`` or ``sklearn``."""
        ...

    def predict(self, batch: Batch) -> Batch:
        """Outputs for ``batch``; every output has as many rows as the inputs."""
        ...


def example_batch(inputs: tuple[TensorSpec, ...], rows: int = 1) -> Batch:
    """A batch of zeros matching ``inputs``, used for the warm-up prediction."""
    batch: Batch = {}
    for spec in inputs:
        shape = tuple(rows if i == 0 else (1 if d < 0 else d) for i, d in enumerate(spec.shape))
        if spec.datatype is Datatype.BYTES:
            batch[spec.name] = np.full(shape, "", dtype=np.object_)
        else:
            batch[spec.name] = np.zeros(shape, dtype=NUMPY_DTYPES[spec.datatype])
    return batch
