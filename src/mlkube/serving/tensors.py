"""JSON values → numpy arrays checked against a model's tensor specs. Pure.

Shared by both protocols: the caller's mistakes (ragged rows, strings where numbers belong,
NaN or Infinity, wrong rank or size) become ``InvalidInputError`` with a sentence naming the
input, what was expected and what was found.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import orjson

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import NUMPY_DTYPES, Array, Datatype, TensorSpec

_NUMERIC_KINDS = {
    "b": "boolean",
    "i": "integer",
    "u": "unsigned integer",
    "f": "floating point",
}


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidInputError saying what is wrong."""
    if not body:
        raise InvalidInputError("the request body is empty; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInputError(f"the request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError(f"expected a JSON object, found {type(payload).__name__}")
    return payload


def mentions_booleans(body: bytes) -> bool:
    """Whether a JSON body could hold true or false at all (a byte search, far cheaper than
    looking through every parsed value): when not, ``to_array`` skips that scan."""
    return b"true" in body or b"false" in body


def to_array(value: Any, spec: TensorSpec, *, what: str, booleans: bool = True) -> Array:
    """``value`` (nested JSON lists) as an array of the model's dtype, shape checked.

    ``booleans=False`` promises the JSON held no true/false (see ``mentions_booleans``).
    """
    if spec.datatype is Datatype.BYTES:
        array = _bytes_array(value, what)
    else:
        array = _numeric_array(value, spec.datatype, what, booleans)
    check_shape(array, spec, what=what)
    return array


def _numeric_array(value: Any, datatype: Datatype, what: str, booleans: bool) -> Array:
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidInputError(f"{what}: rows must all have the same shape") from None
    if raw.dtype.kind not in _NUMERIC_KINDS:
        found = "rows of different lengths" if raw.dtype.kind == "O" else "strings"
        raise InvalidInputError(f"{what}: expected numbers ({datatype}), found {found}")
    if raw.dtype.kind == "b" and datatype is not Datatype.BOOL:
        raise InvalidInputError(f"{what}: expected numbers ({datatype}), found booleans")
    if booleans and raw.dtype.kind != "b" and isinstance(value, list) and _holds_booleans(value):
        # numpy reads [1, true] as [1, 1]: a row mixing the two is a mistake, not a number.
        raise InvalidInputError(
            f"{what}: expected {datatype} values, found numbers mixed with booleans"
        )
    target = np.dtype(NUMPY_DTYPES[datatype])
    if target.kind in "iu" and raw.dtype.kind == "f":
        raise InvalidInputError(f"{what}: expected integers ({datatype}), found fractions")
    # A finite sum proves every value finite; only when it is not do we look closer.
    if raw.dtype.kind == "f" and not _finite_sum(raw) and not np.isfinite(raw).all():
        raise InvalidInputError(f"{what}: NaN and Infinity are not valid inputs")
    if target.kind in "iu" and raw.size:
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInputError(f"{what}: values out of range for {datatype}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        array = raw.astype(target, copy=False)
    if (
        target.kind == "f"
        and target.itemsize < raw.dtype.itemsize
        and not _finite_sum(array)
        and not np.isfinite(array).all()
    ):
        raise InvalidInputError(f"{what}: values too large for {datatype}")
    return array


def _finite_sum(array: Array) -> bool:
    """Whether the sum is finite; finite values may still add up past the dtype's largest
    (1.7e38 + 1.7e38 in FP32), which is no error of theirs: numpy's warning is silenced."""
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(array.sum())


def _holds_booleans(value: list[Any]) -> bool:
    """Whether nested lists hold a JSON true/false anywhere (a C-speed scan per level)."""
    level: list[Any] = value
    while level:
        if any(item is True or item is False for item in level):
            return True
        lists = [item for item in level if isinstance(item, list)]
        level = [item for inner in lists for item in inner]
    return False


def _bytes_array(value: Any, what: str) -> Array:
    try:
        raw = np.asarray(value, dtype=object)
    except ValueError:
        raise InvalidInputError(f"{what}: rows must all have the same shape") from None
    flat = raw.reshape(-1)
    for index, item in enumerate(flat):
        if isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str):
            try:
                flat[index] = base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInputError(f"{what}: invalid base64 in b64 value") from None
        elif isinstance(item, str):
            flat[index] = item.encode()
        elif not isinstance(item, bytes):
            raise InvalidInputError(
                f"{what}: expected strings (BYTES), found {type(item).__name__}"
            )
    return raw


def check_shape(array: Array, spec: TensorSpec, *, what: str) -> None:
    """Rank and fixed dimensions must match the model's input; the batch axis is free."""
    shape = array.shape
    if len(shape) != len(spec.shape):
        raise InvalidInputError(
            f"{what}: expected shape {_shape_text(spec.shape)}, found {list(shape)}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
        if axis > 0 and want >= 0 and want != got:
            raise InvalidInputError(
                f"{what}: expected shape {_shape_text(spec.shape)}, found {list(shape)}"
            )
    if shape and shape[0] == 0:
        raise InvalidInputError(f"{what}: the batch is empty (0 rows)")


def _shape_text(shape: tuple[int, ...]) -> str:
    return (
        "["
        + ", ".join("N" if i == 0 else ("*" if d < 0 else str(d)) for i, d in enumerate(shape))
        + "]"
    )


def to_json_value(array: Array) -> Any:
    """An output array as JSON-ready data (numpy arrays pass through orjson directly)."""
    if array.dtype.kind in "OSU":
        if array.ndim == 0:
            return _text(array.item())
        return np.vectorize(_text, otypes=[object])(array).tolist()
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    return array


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    return value
