"""Open Inference Protocol v2 over gRPC: ``ModelInferRequest`` → checked model inputs, model
outputs → ``ModelInferResponse``.

Each input's values (typed ``contents`` or ``raw_input_contents``) become a flat numpy array
of its declared datatype, and then go through REST v2's own checks (``v2.parse_tensors``):
the same mistakes get the same messages over both protocols.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import NUMPY_DTYPES, Array, Batch, Datatype, TensorSpec, datatype_of
from mlkube.serving import v2
from mlkube.serving.binary_tensors import as_bytes, decode_values, encode_values
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb

# Which InferTensorContents field holds each datatype (FP16 travels only as raw contents).
CONTENTS_FIELD = {
    Datatype.BOOL: "bool_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}
_FIELDS = tuple(sorted(set(CONTENTS_FIELD.values())))
_DATATYPES = frozenset(d.value for d in Datatype)


def parse_infer(
    request: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> tuple[v2.InferRequest, bool]:
    """The checked request, and whether it sent raw contents (the answer does the same)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "send one per input, in order"
        )
    if not request.inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors")
    tensors = []
    for position, tensor in enumerate(request.inputs):
        what = f"input '{tensor.name}'"
        values = _values(tensor, raw[position] if raw else None, what)
        tensors.append(
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "data": values,
            }
        )
    batch = v2.parse_tensors(tensors, inputs, False)
    requested = [{"name": o.name} for o in request.outputs] or None
    names = v2.output_names(requested, outputs)
    return v2.InferRequest(batch, request.id or None, names), bool(raw)


def _values(tensor: Any, raw: bytes | None, what: str) -> Array | list[Any]:
    if tensor.datatype not in _DATATYPES:
        return []  # v2's checks name the unknown datatype
    datatype = Datatype(tensor.datatype)
    if any(len(getattr(tensor.contents, f)) for f in _FIELDS) and raw is not None:
        raise InvalidInputError(f"{what}: has both contents and raw_input_contents; send one")
    if raw is not None:
        return decode_values(raw, datatype, what)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInputError(f"{what}: {datatype} values travel only in raw_input_contents")
    values = getattr(tensor.contents, field)
    if not len(values):
        others = [f for f in _FIELDS if f != field and len(getattr(tensor.contents, f))]
        if others:
            raise InvalidInputError(
                f"{what}: datatype {datatype} takes its values in {field}, found {others[0]}"
            )
    if datatype is Datatype.BYTES:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    if datatype in (Datatype.INT8, Datatype.INT16, Datatype.UINT8, Datatype.UINT16):
        # Carried in 32 bits: the declared datatype's range is checked as REST checks it.
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(np.dtype(NUMPY_DTYPES[datatype]))
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInputError(f"{what}: values out of range for {datatype}")
        return wide.astype(NUMPY_DTYPES[datatype])
    return np.asarray(values, dtype=NUMPY_DTYPES[datatype])


def encode_infer(
    outputs: Batch, *, model: str, version: int, request: v2.InferRequest, raw: bool
) -> Any:
    """The ModelInferResponse; raw contents when the request sent raw contents, or when an
    output is FP16 (which has no typed field)."""
    names = request.output_names or tuple(outputs)
    arrays = [outputs[name] for name in names]
    use_raw = raw or any(datatype_of(a.dtype) is Datatype.FP16 for a in arrays)
    response = pb.ModelInferResponse(
        model_name=model, model_version=str(version), id=request.request_id or ""
    )
    for name, array in zip(names, arrays, strict=True):
        datatype = datatype_of(array.dtype)
        tensor = response.outputs.add(name=name, datatype=str(datatype), shape=list(array.shape))
        if use_raw:
            response.raw_output_contents.append(encode_values(array))
            continue
        field = getattr(tensor.contents, CONTENTS_FIELD[datatype])
        flat = array.reshape(-1)
        if datatype is Datatype.BYTES:
            field.extend(as_bytes(item) for item in flat)
        else:
            field.extend(flat.tolist())
    return response


def model_metadata(
    name: str,
    versions: list[int],
    platform: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> Any:
    """ModelMetadataResponse: what ``GET /v2/models/{name}`` says."""

    def tensor(spec: TensorSpec) -> Any:
        return pb.ModelMetadataResponse.TensorMetadata(
            name=spec.name, datatype=str(spec.datatype), shape=list(spec.shape)
        )

    return pb.ModelMetadataResponse(
        name=name,
        versions=[str(v) for v in versions],
        platform=platform,
        inputs=[tensor(s) for s in inputs],
        outputs=[tensor(s) for s in outputs],
    )
