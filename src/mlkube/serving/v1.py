"""TF Serving REST API (v1): request parsing and response encoding. Pure.

Row format: ``{"instances": [...]}`` → ``{"predictions": [...]}``; columnar format:
``{"inputs": ...}`` → ``{"outputs": ...}``. A model with one input takes plain rows; with
several inputs each instance is an object keyed by input name. With several outputs each
prediction is an object keyed by output name, as TF Serving does.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import orjson

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import Batch, TensorSpec
from mlkube.serving.models import VersionStatus
from mlkube.serving.tensors import json_object, mentions_booleans, to_array, to_json_value

_TF_DTYPES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}
ROW = "row"
COLUMNAR = "columnar"


def parse_predict(body: bytes, inputs: tuple[TensorSpec, ...]) -> tuple[Batch, str]:
    """The model inputs in a predict request, and which format it used."""
    payload = json_object(body)
    unknown = set(payload) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise InvalidInputError(
            f"unknown field(s) {sorted(unknown)}; a predict request has 'instances' or 'inputs'"
        )
    signature = payload.get("signature_name", "serving_default")
    if signature not in ("serving_default", "", None):
        raise InvalidInputError(
            f"unknown signature_name '{signature}' (this model has serving_default)"
        )
    if ("instances" in payload) == ("inputs" in payload):
        raise InvalidInputError("a predict request needs exactly one of 'instances' or 'inputs'")
    booleans = mentions_booleans(body)
    if "instances" in payload:
        return _rows(payload["instances"], inputs, booleans), ROW
    return _columns(payload["inputs"], inputs, booleans), COLUMNAR


def parse_columns(columns: dict[str, Any], inputs: tuple[TensorSpec, ...]) -> Batch:
    """Typed columns keyed by input name (TF Serving's gRPC Predict), with the columnar
    format's checks and messages."""
    return _columns(columns, inputs, False)


def _rows(instances: Any, inputs: tuple[TensorSpec, ...], booleans: bool) -> Batch:
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError("'instances' must be a non-empty list of rows")
    if len(inputs) == 1 and not isinstance(instances[0], dict):
        spec = inputs[0]
        what = f"instances (input '{spec.name}')"
        return {spec.name: to_array(instances, spec, what=what, booleans=booleans)}
    if not all(isinstance(row, dict) for row in instances):
        names = ", ".join(s.name for s in inputs)
        raise InvalidInputError(
            f"this model has inputs {names}: each instance must be an object keyed by input name"
        )
    batch: Batch = {}
    for spec in inputs:
        try:
            column = [row[spec.name] for row in instances]
        except KeyError:
            raise InvalidInputError(f"an instance lacks input '{spec.name}'") from None
        batch[spec.name] = to_array(column, spec, what=f"input '{spec.name}'", booleans=booleans)
    _reject_unknown(set().union(*(row.keys() for row in instances)), inputs)
    return batch


def _columns(columns: Any, inputs: tuple[TensorSpec, ...], booleans: bool) -> Batch:
    if not isinstance(columns, dict):
        if len(inputs) != 1:
            names = ", ".join(s.name for s in inputs)
            raise InvalidInputError(f"this model has inputs {names}: 'inputs' must be an object")
        columns = {inputs[0].name: columns}
    _reject_unknown(set(columns), inputs)
    batch: Batch = {}
    for spec in inputs:
        if spec.name not in columns:
            raise InvalidInputError(f"'inputs' lacks input '{spec.name}'")
        batch[spec.name] = to_array(
            columns[spec.name], spec, what=f"input '{spec.name}'", booleans=booleans
        )
    rows = {int(array.shape[0]) for array in batch.values()}
    if len(rows) > 1:
        raise InvalidInputError(f"inputs have different numbers of rows: {sorted(rows)}")
    return batch


def _reject_unknown(names: set[str], inputs: tuple[TensorSpec, ...]) -> None:
    unknown = names - {spec.name for spec in inputs}
    if unknown:
        expected = ", ".join(spec.name for spec in inputs)
        raise InvalidInputError(f"unknown input(s) {sorted(unknown)}; this model takes {expected}")


def encode_predict(outputs: Batch, request_format: str) -> bytes:
    """The JSON body answering a predict request."""
    if request_format == COLUMNAR:
        if len(outputs) == 1:
            value: Any = to_json_value(next(iter(outputs.values())))
        else:
            value = {name: to_json_value(array) for name, array in outputs.items()}
        return orjson.dumps({"outputs": value}, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(outputs) == 1:
        predictions: Any = to_json_value(next(iter(outputs.values())))
    else:
        spliced = _rows_json(outputs)
        if spliced is not None:
            return spliced
        predictions = _rows_of(outputs)
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


_NUMBERS = frozenset("biuf")


def _rows_json(outputs: Batch) -> bytes | None:
    """``{"predictions": [{name: value, ...}, ...]}`` for numeric outputs of one or two axes,
    byte for byte what ``_rows_of`` and orjson give, or None (use them).

    Each output is serialized once, whole, and cut into its rows' JSON texts (numbers hold no
    "," or "],["); the rows are joined in C. Building a dict and a row view per row and
    serializing those costs about twice as much for 32 rows."""
    columns: list[Any] = []
    rows = -1
    for name, array in outputs.items():
        if array.dtype.kind not in _NUMBERS or array.ndim not in (1, 2):
            return None
        if rows != array.shape[0]:
            if rows != -1 or not array.shape[0]:
                return None  # rows that differ, or none: the generic path says so
            rows = array.shape[0]
        value = to_json_value(array)
        try:
            if value.ndim == 1:  # as _as_list: Python scalars (FP32 written as float64)
                pieces = orjson.dumps(value.tolist())[1:-1].split(b",")
            else:
                text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
                pieces = text[1:-1].replace(b"],[", b"]\0[").split(b"\0")
        except orjson.JSONEncodeError:
            return None
        key = orjson.dumps(name) + b":"
        columns.append(repeat(key if not columns else b"," + key))
        columns.append(pieces)
    # Not strict: the keys repeat endlessly; every output has ``rows`` pieces.
    joined = b"},{".join(map(b"".join, zip(*columns, strict=False)))
    return b'{"predictions":[{' + joined + b"}]}"


def _rows_of(outputs: Batch) -> list[dict[str, Any]]:
    """One object per row keyed by output name (the common two-output case unrolled: this
    runs for every answered request)."""
    names = tuple(outputs)
    columns = [_as_list(array) for array in outputs.values()]
    if len(names) == 2:
        first, second = names
        return [{first: a, second: b} for a, b in zip(columns[0], columns[1], strict=True)]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _as_list(array: Any) -> list[Any]:
    """One JSON-ready value per row; rows of numeric matrices stay numpy for orjson."""
    value = to_json_value(array)
    if isinstance(value, list):
        return value
    if value.ndim == 1:
        return list(value.tolist())
    return list(value)


def status_body(statuses: list[VersionStatus]) -> bytes:
    """``GET /v1/models/{name}[/versions/N]``: every version's state, as TF Serving's
    GetModelStatus reports it (a failed load: state END, error code UNKNOWN and the error)."""
    return orjson.dumps(
        {
            "model_version_status": [
                {
                    "version": str(status.version),
                    "state": str(status.state),
                    "status": {
                        "error_code": "UNKNOWN" if status.failed else "OK",
                        "error_message": status.error,
                    },
                }
                for status in statuses
            ]
        }
    )


def metadata_body(
    name: str, version: int, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> bytes:
    """``GET /v1/models/{name}/metadata``: the serving_default signature."""

    def tensor(spec: TensorSpec) -> dict[str, Any]:
        return {
            "dtype": _TF_DTYPES[str(spec.datatype)],
            "tensor_shape": {
                "dim": [{"size": str(d), "name": ""} for d in spec.shape],
                "unknown_rank": False,
            },
            "name": spec.name,
        }

    signature = {
        "inputs": {spec.name: tensor(spec) for spec in inputs},
        "outputs": {spec.name: tensor(spec) for spec in outputs},
        "method_name": "tensorflow/serving/predict",
    }
    return orjson.dumps(
        {
            "model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
        }
    )


def error_body(message: str) -> bytes:
    """TF Serving's error shape."""
    return orjson.dumps({"error": message})
