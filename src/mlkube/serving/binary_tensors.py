"""The v2 binary tensor extension (Triton's and KServe's ``binary_tensor_data``). Pure.

A request whose ``Inference-Header-Content-Length`` header is N holds a JSON infer request in
its first N bytes and raw tensor data after it: each input that carries
``"parameters": {"binary_data_size": S}`` (and no ``data``) takes the next S bytes, in the
order of ``inputs``: the flat row-major little-endian values, or for BYTES each element as a
4-byte little-endian length and its bytes. Outputs come back the same way when the request
asks (``"parameters": {"binary_data_output": true}`` for all, or ``"binary_data": true`` on an
output); the answer then carries the header too. Every mistake is an ``InvalidInputError``
(400 in the v2 error shape); the server's body limit holds for the whole body.
See https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import NUMPY_DTYPES, Array, Batch, Datatype, TensorSpec, datatype_of
from mlkube.serving import v2
from mlkube.serving.tensors import json_object, mentions_booleans, to_json_value

HEADER = "inference-header-content-length"
EXTENSION = "binary_tensor_data"
CONTENT_TYPE = "application/octet-stream"
_MARKER = b"binary_data"
_LENGTH = struct.Struct("<I")
_DATATYPES = frozenset(d.value for d in Datatype)


def parse_infer(
    body: bytes,
    header: str | None,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> v2.InferRequest:
    """An infer request with or without binary parts (``header``: the request's
    Inference-Header-Content-Length, if any)."""
    if header is None and _MARKER not in body:
        return v2.parse_infer(body, inputs, outputs)  # plain JSON: the common case, unchanged
    json_part, binary = _split(body, header)
    payload = json_object(json_part)
    tensors = payload.get("inputs")
    if isinstance(tensors, list):
        offset = 0
        for position, tensor in enumerate(tensors):
            if isinstance(tensor, dict):
                offset = _take_binary(tensor, position, binary, offset)
        if offset != len(binary):
            raise InvalidInputError(
                f"the binary part holds {len(binary)} bytes but the inputs' binary_data_size "
                f"add up to {offset}"
            )
    elif binary:
        raise InvalidInputError("binary data follows the JSON header but no input claims it")
    request = v2.infer_request(payload, inputs, outputs, booleans=mentions_booleans(json_part))
    wanted = _binary_outputs(payload, request.output_names or tuple(s.name for s in outputs))
    if not wanted:
        return request
    return v2.InferRequest(request.inputs, request.request_id, request.output_names, wanted)


def _split(body: bytes, header: str | None) -> tuple[bytes, bytes]:
    if header is None:
        return body, b""
    text = header.strip()
    if not text.isdigit():
        raise InvalidInputError(
            f"Inference-Header-Content-Length must be a non-negative integer, found {header!r}"
        )
    length = int(text)
    if length > len(body):
        raise InvalidInputError(
            f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes"
        )
    return body[:length], body[length:]


def _take_binary(tensor: dict[str, Any], position: int, binary: bytes, offset: int) -> int:
    """Put the input's binary values into ``tensor["data"]``; the next offset."""
    parameters = tensor.get("parameters")
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return offset
    what = f"input '{tensor.get('name', position)}'"
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError(f"{what}: binary_data_size must be a non-negative integer")
    if "data" in tensor:
        raise InvalidInputError(f"{what}: has both 'data' and binary_data_size; send one")
    end = offset + size
    if end > len(binary):
        raise InvalidInputError(
            f"{what}: binary_data_size {size} runs past the end of the binary part "
            f"({len(binary)} bytes after the JSON header)"
        )
    datatype = tensor.get("datatype")
    if datatype not in _DATATYPES:
        tensor["data"] = []  # v2's checks name the bad datatype
        return end
    tensor["data"] = decode_values(binary[offset:end], Datatype(datatype), what)
    return end


def decode_values(raw: bytes, datatype: Datatype, what: str) -> Array:
    """Flat values of ``datatype`` from their binary form (see ``encode_values``)."""
    if datatype is Datatype.BYTES:
        return _decode_bytes(raw, what)
    dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise InvalidInputError(
            f"{what}: {len(raw)} bytes of binary data is not a whole number of {datatype} "
            f"values ({dtype.itemsize} bytes each)"
        )
    return np.frombuffer(raw, dtype=dtype)


def _decode_bytes(raw: bytes, what: str) -> Array:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError(f"{what}: BYTES binary data ends inside a length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInputError(f"{what}: a BYTES element runs past its binary data")
        items.append(raw[offset : offset + length])
        offset += length
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _binary_outputs(payload: dict[str, Any], names: tuple[str, ...]) -> frozenset[str]:
    parameters = payload.get("parameters")
    everything = False
    if isinstance(parameters, dict) and "binary_data_output" in parameters:
        flag = parameters["binary_data_output"]
        if not isinstance(flag, bool):
            raise InvalidInputError("parameters.binary_data_output must be true or false")
        everything = flag
    chosen = set(names) if everything else set()
    for requested in payload.get("outputs") or ():
        output_parameters = requested.get("parameters")
        if isinstance(output_parameters, dict) and "binary_data" in output_parameters:
            flag = output_parameters["binary_data"]
            if not isinstance(flag, bool):
                raise InvalidInputError(
                    f"output '{requested['name']}': parameters.binary_data must be true or false"
                )
            (chosen.add if flag else chosen.discard)(requested["name"])
    return frozenset(chosen)


def encode_infer(
    outputs: Batch, *, model: str, version: int, request: v2.InferRequest
) -> tuple[bytes, int | None]:
    """The answer's body, and its JSON header's length when some outputs are binary (the
    response's Inference-Header-Content-Length); JSON-only answers are v2's own."""
    if not request.binary_outputs:
        return v2.encode_infer(outputs, model=model, version=version, request=request), None
    names = request.output_names or tuple(outputs)
    tensors = []
    parts = []
    for name in names:
        array = outputs[name]
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": str(datatype_of(array.dtype)),
            "shape": list(array.shape),
        }
        if name in request.binary_outputs:
            raw = encode_values(array)
            parts.append(raw)
            tensor["parameters"] = {"binary_data_size": len(raw)}
        else:
            tensor["data"] = to_json_value(array.reshape(-1))
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": tensors}
    if request.request_id is not None:
        body["id"] = request.request_id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return header + b"".join(parts), len(header)


def encode_values(array: Array) -> bytes:
    """An array's flat row-major values as the extension (and gRPC's raw contents) carry
    them: little-endian numbers, or length-prefixed BYTES elements."""
    if array.dtype.kind in "OSU":
        chunks = []
        for item in array.reshape(-1):
            data = as_bytes(item)
            chunks.append(_LENGTH.pack(len(data)))
            chunks.append(data)
        return b"".join(chunks)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).tobytes()


def as_bytes(item: Any) -> bytes:
    """A BYTES element as bytes (models may return str)."""
    return item.encode() if isinstance(item, str) else bytes(item)
