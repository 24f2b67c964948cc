"""Open Inference Protocol v2 (KServe): request parsing and response encoding. Pure.

An infer request names each input with its ``shape``, ``datatype`` and ``data`` (flat in
row-major order, or nested). Both are checked: the datatype against the data and the model,
the shape against the data's size and the model's input shape. The binary tensor extension
(``binary_tensors``) and gRPC (``grpc/``) hand over ``data`` as a flat typed numpy array
instead of JSON lists; the same checks, and the same messages, apply to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import Batch, Datatype, TensorSpec, datatype_of
from mlkube.serving.tensors import (
    check_shape,
    json_object,
    mentions_booleans,
    to_array,
    to_json_value,
)

_DATATYPES = {d.value for d in Datatype}
_ALLOWED_REQUEST = {"id", "parameters", "inputs", "outputs"}
_ALLOWED_INPUT = {"name", "shape", "datatype", "parameters", "data"}


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed infer request: the model inputs and what the caller wants back."""

    inputs: Batch
    request_id: str | None
    output_names: tuple[str, ...] | None
    binary_outputs: frozenset[str] = frozenset()
    """Outputs to answer as binary data (the binary tensor extension, ``binary_tensors``)."""


def parse_infer(
    body: bytes, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> InferRequest:
    """The inputs of an infer request, checked against the model."""
    return infer_request(json_object(body), inputs, outputs, booleans=mentions_booleans(body))


def infer_request(
    payload: dict[str, Any],
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    *,
    booleans: bool,
) -> InferRequest:
    """An infer request's JSON object, checked against the model."""
    unknown = set(payload) - _ALLOWED_REQUEST
    if unknown:
        raise InvalidInputError(f"unknown field(s) {sorted(unknown)} in the infer request")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError("'id' must be a string")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors")
    batch = parse_tensors(tensors, inputs, booleans)
    return InferRequest(batch, request_id, output_names(payload.get("outputs"), outputs))


def parse_tensors(tensors: list[Any], specs: tuple[TensorSpec, ...], booleans: bool) -> Batch:
    """The model's inputs from v2 input tensors (objects with name, shape, datatype, data),
    each checked against the model; ``booleans``: whether JSON data may hold true/false."""
    by_name = {spec.name: spec for spec in specs}
    batch: Batch = {}
    for position, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            raise InvalidInputError(f"inputs[{position}] must be an object")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidInputError(f"inputs[{position}] needs a string 'name'")
        spec = by_name.get(name)
        if spec is None:
            # Even for a one-input model: a name the model does not have is a mistake to say,
            # not a guess to make (it may be meant for another model).
            expected = ", ".join(f"'{known}'" for known in by_name)
            raise InvalidInputError(f"unknown input '{name}'; this model's inputs are {expected}")
        if spec.name in batch:
            raise InvalidInputError(f"input '{name}' appears twice")
        batch[spec.name] = _tensor(tensor, spec, booleans)
    missing = [spec.name for spec in specs if spec.name not in batch]
    if missing:
        raise InvalidInputError(f"missing input(s) {missing}")
    rows = {int(array.shape[0]) for array in batch.values()}
    if len(rows) > 1:
        raise InvalidInputError(f"inputs have different numbers of rows: {sorted(rows)}")
    return batch


def _tensor(tensor: dict[str, Any], spec: TensorSpec, booleans: bool) -> Any:
    what = f"input '{tensor['name']}'"
    unknown = set(tensor) - _ALLOWED_INPUT
    if unknown:
        raise InvalidInputError(f"{what}: unknown field(s) {sorted(unknown)}")
    for field in ("shape", "datatype", "data"):
        if field not in tensor:
            raise InvalidInputError(f"{what}: missing '{field}'")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInputError(f"{what}: 'shape' must be a list of non-negative integers")
    datatype = tensor["datatype"]
    if datatype not in _DATATYPES:
        raise InvalidInputError(
            f"{what}: unknown datatype {datatype!r} (expected one of {sorted(_DATATYPES)})"
        )
    declared = Datatype(datatype)
    if (declared is Datatype.BYTES) != (spec.datatype is Datatype.BYTES):
        raise InvalidInputError(
            f"{what}: datatype {datatype} does not fit the model's {spec.datatype} input"
        )
    data = tensor["data"]
    if isinstance(data, np.ndarray):  # binary or gRPC: flat values of the declared datatype
        flat_spec = TensorSpec(spec.name, declared, (-1,))
        checked = to_array(data, flat_spec, what=what, booleans=False)
    else:
        if not isinstance(data, list):
            data = [data]
        declared_spec = TensorSpec(spec.name, declared, (-1,) * _depth(data))
        checked = to_array(data, declared_spec, what=what, booleans=booleans)
    flat = checked.reshape(-1)
    expected = math.prod(shape)
    if flat.size != expected:
        raise InvalidInputError(
            f"{what}: shape {shape} needs {expected} values, 'data' has {flat.size}"
        )
    array = flat.reshape(shape)
    if declared is not Datatype.BYTES and declared is not spec.datatype:
        # The same checks again for the model's own datatype: range, fractions, overflow.
        return to_array(array, spec, what=f"{what} (as the model's {spec.datatype})")
    check_shape(array, spec, what=what)
    return array


def _depth(data: list[Any]) -> int:
    depth = 1
    while data and isinstance(data[0], list):
        data = data[0]
        depth += 1
    return depth


def output_names(requested: Any, outputs: tuple[TensorSpec, ...]) -> tuple[str, ...] | None:
    """The outputs a request asks for (None: all of them), checked against the model."""
    if requested is None:
        return None
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise InvalidInputError("'outputs' must be a list of objects with a 'name'")
    known = {spec.name for spec in outputs}
    names = tuple(o["name"] for o in requested)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInputError(f"unknown output(s) {unknown}; this model has {sorted(known)}")
    return names


def encode_infer(outputs: Batch, *, model: str, version: int, request: InferRequest) -> bytes:
    """The JSON body answering an infer request."""
    names = request.output_names or tuple(outputs)
    tensors = []
    for name in names:
        array = outputs[name]
        tensors.append(
            {
                "name": name,
                "datatype": str(datatype_of(array.dtype)),
                "shape": list(array.shape),
                "data": to_json_value(array.reshape(-1)),
            }
        )
    body: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": tensors}
    if request.request_id is not None:
        body["id"] = request.request_id
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def model_metadata(
    name: str,
    versions: list[int],
    platform: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    extra: dict[str, str] | None = None,
) -> bytes:
    """``GET /v2/models/{name}[/versions/N]``: ``versions`` lists those served.

    ``extra`` adds fields the protocol leaves open, e.g. ``device`` where the model predicts.
    """
    return orjson.dumps(
        {
            "name": name,
            "versions": [str(version) for version in versions],
            "platform": platform,
            "inputs": [spec.as_dict() for spec in inputs],
            "outputs": [spec.as_dict() for spec in outputs],
            **(extra or {}),
        }
    )


def error_body(message: str) -> bytes:
    """The v2 error shape."""
    return orjson.dumps({"error": message})
