"""Request bytes → model inputs, with a fast path for the common JSON shapes. Pure.

The server decodes every predict/infer body through ``decode_predict`` (v1) and
``decode_infer`` (v2). For the shapes nearly every client sends -- v1
``{"instances": [[numbers...], ...]}`` and v2 ``{"inputs": [{"name", "shape",
"datatype", "data": [numbers...]}]}`` for a one-input model with a floating point
input -- the parsed lists go straight into an array of the model's dtype in one
numpy call, skipping the generic path's float64 intermediate, type scans and
per-level checks. Anything else, or anything the fast path cannot prove ordinary
(strings, booleans, nulls, objects, ragged rows, non-finite or huge values, a
shape that does not fit), falls back to the generic codecs (``v1``, ``v2``,
``binary_tensors``), so validation and error messages are theirs, unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from mlkube.runtimes.base import NUMPY_DTYPES, Array, Batch, Datatype, TensorSpec
from mlkube.serving import binary_tensors, v1, v2

_FLOATS = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64})
# Below 2**53 every integer is exact in float64, so a Python int reaches the target
# dtype the same way whether numpy goes through int64 or float64 first; past it the
# generic path's rounding (or refusal) is the reference.
_EXACT_INTEGERS = float(2**53)
_V2_KEYS = frozenset({"name", "shape", "datatype", "data"})
# Quote bytes an ordinary body holds: each key and string value has two. Any other
# quote means a string somewhere in the data (or an escaped quote): not ordinary.
_V1_QUOTES = 2  # "instances"
_V2_QUOTES = 2 + 2 * 4 + 2 * 2  # "inputs", the four keys, the name and datatype values


def decode_predict(body: bytes, inputs: tuple[TensorSpec, ...]) -> tuple[Batch, str]:
    """A v1 predict body as model inputs and its format (``v1.parse_predict``'s contract)."""
    fast = fast_predict(body, inputs)
    if fast is not None:
        return fast, v1.ROW
    return v1.parse_predict(body, inputs)


def decode_infer(
    body: bytes,
    header: str | None,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> v2.InferRequest:
    """A v2 infer body (``header``: its Inference-Header-Content-Length, if any) as an infer
    request (``binary_tensors.parse_infer``'s contract)."""
    if header is None:
        fast = fast_infer(body, inputs)
        if fast is not None:
            return v2.InferRequest(fast, None, None)
    return binary_tensors.parse_infer(body, header, inputs, outputs)


def fast_predict(body: bytes, inputs: tuple[TensorSpec, ...]) -> Batch | None:
    """The batch of an ordinary v1 row-format body, or None: use the generic path."""
    if len(inputs) != 1 or inputs[0].datatype not in _FLOATS:
        return None
    if body.count(b'"') != _V1_QUOTES or _mentions_literals(body):
        return None
    payload = _loads(body)
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        return None
    spec = inputs[0]
    array = _floats(instances, spec.datatype)
    if array is None or not _fits(array.shape, spec.shape):
        return None
    return {spec.name: array}


def fast_infer(body: bytes, inputs: tuple[TensorSpec, ...]) -> Batch | None:
    """The batch of an ordinary v2 JSON body with one input tensor, or None: use the
    generic path (which also handles the binary tensor extension)."""
    if len(inputs) != 1 or inputs[0].datatype not in _FLOATS:
        return None
    if body.count(b'"') != _V2_QUOTES or _mentions_literals(body):
        return None
    payload = _loads(body)
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or len(tensors) != 1:
        return None
    tensor = tensors[0]
    spec = inputs[0]
    if (
        not isinstance(tensor, dict)
        or tensor.keys() != _V2_KEYS
        or tensor["name"] != spec.name
        or tensor["datatype"] != spec.datatype.value
    ):
        return None
    shape = tensor["shape"]
    data = tensor["data"]
    if not isinstance(data, list) or not _plain_shape(shape) or not _fits(shape, spec.shape):
        return None
    array = _floats(data, spec.datatype)
    if array is None or array.size != math.prod(shape):
        return None
    return {spec.name: array.reshape(shape)}


def _mentions_literals(body: bytes) -> bool:
    # true/false would become 1.0/0.0 and null NaN in a float array: leave them to the
    # generic path, which refuses them with its own words.
    return b"true" in body or b"false" in body or b"null" in body


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the generic path says what is wrong


def _floats(value: list[Any], datatype: Datatype) -> Array | None:
    """``value`` as a C-contiguous array of ``datatype`` when it is rectangular, holds only
    numbers, and every value converts exactly as the generic path converts it."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        try:
            array = np.array(value, dtype=NUMPY_DTYPES[datatype])
        except (ValueError, TypeError, OverflowError):
            return None  # ragged, objects inside: the generic path words it
        if not array.size:
            return None
        # One pass proves every value finite (an overflowing sum is checked value by
        # value), then one finds the magnitude.
        if not math.isfinite(array.sum()) and not np.isfinite(array).all():
            return None
        if float(np.abs(array).max()) >= _EXACT_INTEGERS:
            return None
    return array


def _plain_shape(shape: Any) -> bool:
    return isinstance(shape, list) and all(
        type(dimension) is int and dimension >= 0 for dimension in shape
    )


def _fits(shape: tuple[int, ...] | list[int], want: tuple[int, ...]) -> bool:
    """Whether ``shape`` passes ``tensors.check_shape`` for an input shaped ``want``."""
    if len(shape) != len(want) or not shape or shape[0] == 0:
        return False
    return all(w < 0 or w == s for w, s in zip(want[1:], shape[1:], strict=True))
