"""Request bytes → model inputs, with a fast path for the common JSON shapes. Pure.

The server decodes every predict/infer body through ``decode_predict`` (v1) and
``decode_infer`` (v2). For the shapes nearly every client sends -- v1
``{"instances": [[numbers...], ...]}`` and v2 ``{"inputs": [{"name", "shape",
"datatype", "data": [numbers...]}]}`` for a one-input model with a floating point
input -- a few byte searches prove the body ordinary, and the numbers become an array of
the model's dtype without the generic path's scans and per-level checks. Two ways, tried
in turn:

1. simdjson parses the body and copies the numbers straight into a float64 buffer: no
   Python object per number (a 32x20 table: ~18 us, against ~25 us for 2.; bench/parse.py);
2. orjson parses it into lists, which become an array by the generic path's own
   conversion (``_floats``): for what 1. declines (FP16, integers past 2**53, nested
   ``data``, a byte order mark, a backslash in a v2 body).

Anything neither can prove ordinary (strings, booleans, nulls, objects, ragged rows,
non-finite or huge values, a shape that does not fit) falls back to the generic codecs
(``v1``, ``v2``, ``binary_tensors``), so validation and error messages are theirs,
unchanged.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, TypeGuard

import numpy as np
import orjson
import simdjson

from mlkube.runtimes.base import NUMPY_DTYPES, Array, Batch, Datatype, TensorSpec
from mlkube.serving import binary_tensors, v1, v2

_FLOATS = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64})
_TARGETS = {datatype: np.dtype(NUMPY_DTYPES[datatype]) for datatype in _FLOATS}
# Integers up to this convert exactly to float64, so a row's ints reach FP32 and FP64 through
# float64 with the generic path's rounding (which converts an all-int table via int64).
_EXACT_INTS = float(2**53)
_V2_KEYS = frozenset({"name", "shape", "datatype", "data"})
# Quote bytes an ordinary body holds: each key and string value has two. Any other
# quote means a string somewhere in the data (or an escaped quote): not ordinary.
_V1_QUOTES = 2  # "instances"
_V2_QUOTES = 2 + 2 * 4 + 2 * 2  # "inputs", the four keys, the name and datatype values
# JSON forbids a byte order mark and orjson refuses one; simdjson skips it.
_BOM = b"\xef\xbb\xbf"
# What simdjson raises: a malformed body (ValueError, RuntimeError for an integer past 64
# bits), an element of another type than asked for (TypeError), a row that is no array.
_SIMDJSON_ERRORS = (ValueError, RuntimeError, TypeError, KeyError, IndexError)


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
    if not _only_numbers(body, _V1_QUOTES):
        return None
    spec = inputs[0]
    array = _parsed_instances(body, spec.datatype)
    if array is None:
        payload = _loads(body)
        if not isinstance(payload, dict) or len(payload) != 1:
            return None
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            return None
        array = _floats(instances, spec.datatype)
    if array is None or not _fits(array.shape, spec.shape):
        return None
    return {spec.name: array}


def fast_infer(body: bytes, inputs: tuple[TensorSpec, ...]) -> Batch | None:
    """The batch of an ordinary v2 JSON body with one input tensor, or None: use the
    generic path (which also handles the binary tensor extension)."""
    if len(inputs) != 1 or inputs[0].datatype not in _FLOATS:
        return None
    if not _only_numbers(body, _V2_QUOTES):
        return None
    parsed = _parsed_tensor(body, inputs[0])
    if parsed is not None:
        return parsed
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


def _only_numbers(body: bytes, quotes: int) -> bool:
    """Whether ``body``, once its ``quotes`` expected quote bytes (keys, names) are
    accounted for, can hold no strings, true, false or null: true/false would become
    1.0/0.0 and null an object in an array, and the generic path refuses them with its own
    words. Scanning a 50 kB body for "true" costs more than decoding it, so: past the last
    quote no string can start, and there a literal shows as a "u" (true, null) or an "l"
    (false, null) -- single bytes, found at memchr speed. Before it (keys and shape, as
    clients usually order them) the words are searched for."""
    last = body.rfind(b'"')
    if body.count(b'"', 0, last + 1) != quotes:
        return False
    if body.find(b"u", last) != -1 or body.find(b"l", last) != -1:
        return False
    return all(body.find(word, 0, last) == -1 for word in (b"true", b"false", b"null"))


def _parsed_instances(body: bytes, datatype: Datatype) -> Array | None:
    """The ``instances`` of an ordinary v1 body (``_only_numbers`` said so) as an array of
    ``datatype``, parsed by simdjson straight into float64; None: let orjson try.

    ``as_buffer`` flattens whatever nesting it meets, so the shape is proved apart: every
    row as long as the first, and no bracket beyond the rows' own (no string can hold one:
    the key is the body's only string). Not FP16: its range ends at 65504, and past it the
    generic path's words are wanted."""
    if datatype is Datatype.FP16 or body.startswith(_BOM):
        return None
    try:
        instances = _field(body, "instances")  # the key is its only string: one key
        if not isinstance(instances, simdjson.Array) or not len(instances):
            return None
        first: object = instances[0]  # typed Array by the stubs: any element, in fact
        if isinstance(first, simdjson.Array):
            rows, width = len(instances), len(first)
            # A row that is no array has no len(): TypeError, caught below.
            lengths = set(map(len, instances))  # type: ignore[arg-type]
            if lengths != {width} or body.count(b"[") != rows + 1:
                return None
            shape: tuple[int, ...] = (rows, width)
        elif body.count(b"[") == 1:
            shape = (len(instances),)
        else:
            return None
        flat = np.frombuffer(instances.as_buffer(of_type="d"), np.float64)
    except _SIMDJSON_ERRORS:
        return None
    return _exact(flat, shape, datatype)


def _parsed_tensor(body: bytes, spec: TensorSpec) -> Batch | None:
    """The one input of an ordinary v2 body with flat ``data``, parsed by simdjson straight
    into float64; None: let orjson try. Without a backslash in the body its name is written
    as is, so the brackets it may hold are known, and any other bracket than those of
    ``inputs``, ``shape`` and ``data`` is nesting inside ``data``."""
    if spec.datatype is Datatype.FP16 or body.startswith(_BOM) or b"\\" in body:
        return None
    try:
        # Its strings are "inputs", the tensor's four keys and two of their values (the
        # quotes were counted): a name and a datatype that are strings leave no room for
        # another key, or for one written twice.
        tensors = _field(body, "inputs")
        if not isinstance(tensors, simdjson.Array) or len(tensors) != 1:
            return None
        tensor: object = tensors[0]
        if (
            not isinstance(tensor, simdjson.Object)
            or tensor.get("name") != spec.name
            or tensor.get("datatype") != spec.datatype.value
        ):
            return None
        shape_value, data = tensor.get("shape"), tensor.get("data")
        if not isinstance(shape_value, simdjson.Array) or not isinstance(data, simdjson.Array):
            return None
        if body.count(b"[") != 3 + spec.name.count("["):
            return None
        shape = shape_value.as_list()
        flat = np.frombuffer(data.as_buffer(of_type="d"), np.float64)
    except _SIMDJSON_ERRORS:
        return None
    if not _plain_shape(shape) or not _fits(shape, spec.shape) or flat.size != math.prod(shape):
        return None
    array = _exact(flat, tuple(shape), spec.datatype)
    return None if array is None else {spec.name: array}


def _field(body: bytes, key: str) -> object:
    """What simdjson reads at ``key`` of the object ``body`` (None: no object, no such key).
    Raises what the parser raises (``_SIMDJSON_ERRORS``)."""
    document = simdjson.Parser().parse(body)
    return document.get(key) if isinstance(document, simdjson.Object) else None


def _exact(flat: Array, shape: tuple[int, ...], datatype: Datatype) -> Array | None:
    """``flat`` (float64) shaped and cast to ``datatype``, when that is bit for bit what the
    generic conversion gives, else None: a value past 2**53 (an integer float64 rounded, or a
    float that large), or no value at all. Copied only when it must be: to another dtype, or
    out of simdjson's read-only buffer."""
    if not flat.size or not np.maximum.reduce(np.abs(flat), axis=None) <= _EXACT_INTS:
        return None  # NaN compares False too
    return flat.reshape(shape).astype(_TARGETS[datatype], copy=not flat.flags.writeable)


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the generic path says what is wrong


def _floats(value: list[Any], datatype: Datatype) -> Array | None:
    """``value`` as an array of ``datatype`` when it is rectangular, holds only numbers and
    every value stays finite. The conversion is the generic path's own (``np.asarray``,
    then ``astype``): numpy's one-step ``np.array(value, dtype=...)`` is slower on many
    rows and rounds integers past 2**53 differently (via float64)."""
    if value and type(value[0]) is list and datatype is not Datatype.FP16:
        table = _table(value, datatype)
        if table is not None:
            return table
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        return None  # ragged: the generic path words it
    if raw.dtype.kind not in "fi" or not raw.size:
        return None  # objects, huge integers (uint64 or object), empty: the generic path
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        array = raw.astype(_TARGETS[datatype], copy=False)
        # One sum proves every value finite; only an overflowing sum needs a closer look.
        if not math.isfinite(array.sum()) and not np.isfinite(array).all():
            return None
    return array


def _table(rows: list[Any], datatype: Datatype) -> Array | None:
    """Rows of numbers (equally long lists) as a [rows, width] array of ``datatype``, or None.

    ``np.fromiter`` over the chained rows skips ``np.asarray``'s dtype and shape discovery
    (a 32x20 table: ~40% fewer instructions). It takes the numbers as float64; a value past
    2**53 (an int that float64 would round, or a float that large) or not finite goes back
    to the generic conversion, so the result is always bit for bit ``np.asarray``'s."""
    width = len(rows[0])
    try:
        if not width or len(set(map(len, rows))) != 1:
            return None
        flat = np.fromiter(chain.from_iterable(rows), np.float64, len(rows) * width)
    except (TypeError, ValueError, OverflowError):  # a row that is no list, a non-number
        return None
    return _exact(flat, (len(rows), width), datatype)


def _plain_shape(shape: Any) -> TypeGuard[list[int]]:
    return isinstance(shape, list) and all(
        type(dimension) is int and dimension >= 0 for dimension in shape
    )


def _fits(shape: tuple[int, ...] | list[int], want: tuple[int, ...]) -> bool:
    """Whether ``shape`` passes ``tensors.check_shape`` for an input shaped ``want``."""
    if len(shape) != len(want) or not shape or shape[0] == 0:
        return False
    return all(w < 0 or w == s for w, s in zip(want[1:], shape[1:], strict=True))
