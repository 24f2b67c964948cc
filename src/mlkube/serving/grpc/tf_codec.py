"""TF Serving over gRPC: ``TensorProto`` ⇄ numpy, ``PredictRequest`` → checked model inputs.

A TensorProto carries its values either as ``tensor_content`` (raw little-endian bytes, what
``tf.make_tensor_proto`` writes for numbers) or in the typed ``*_val`` field of its dtype; one
value with a larger shape fills it (TensorFlow's own rule). The inputs then go through the
REST columnar format's checks (``v1.parse_columns``): the same mistakes, the same messages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import Array, Batch, TensorSpec
from mlkube.serving import v1
from mlkube.serving.binary_tensors import as_bytes
from mlkube.serving.grpc.protos import tf_framework_pb2 as tf
from mlkube.serving.grpc.protos import tf_serving_pb2 as tfs

SIGNATURE = "serving_default"

# dtype → (numpy dtype, the typed field that holds it); DT_STRING holds bytes objects.
_DTYPES: dict[int, tuple[Any, str]] = {
    tf.DT_FLOAT: (np.float32, "float_val"),
    tf.DT_DOUBLE: (np.float64, "double_val"),
    tf.DT_HALF: (np.float16, "half_val"),
    tf.DT_INT8: (np.int8, "int_val"),
    tf.DT_INT16: (np.int16, "int_val"),
    tf.DT_INT32: (np.int32, "int_val"),
    tf.DT_INT64: (np.int64, "int64_val"),
    tf.DT_UINT8: (np.uint8, "int_val"),
    tf.DT_UINT16: (np.uint16, "int_val"),
    tf.DT_UINT32: (np.uint32, "uint32_val"),
    tf.DT_UINT64: (np.uint64, "uint64_val"),
    tf.DT_BOOL: (np.bool_, "bool_val"),
    tf.DT_STRING: (object, "string_val"),
}
_BY_NUMPY = {np.dtype(numpy): dtype for dtype, (numpy, _) in _DTYPES.items() if numpy is not object}


def parse_predict(request: Any, inputs: tuple[TensorSpec, ...]) -> tuple[Batch, tuple[str, ...]]:
    """The checked inputs, and the outputs the filter asks for (empty: all)."""
    signature = request.model_spec.signature_name
    if signature not in ("", SIGNATURE):
        raise InvalidInputError(
            f"unknown signature_name '{signature}' (this model has serving_default)"
        )
    if not request.inputs:
        raise InvalidInputError("a predict request needs 'inputs'")
    columns = {name: to_ndarray(proto, f"input '{name}'") for name, proto in request.inputs.items()}
    return v1.parse_columns(columns, inputs), tuple(request.output_filter)


def to_ndarray(proto: Any, what: str) -> Array:
    """A TensorProto's values as an array of its shape."""
    known = _DTYPES.get(proto.dtype)
    if known is None:
        name = tf.DataType.Name(proto.dtype) if proto.dtype in tf.DataType.values() else proto.dtype
        raise InvalidInputError(f"{what}: dtype {name} is not supported")
    numpy, field = known
    if proto.tensor_shape.unknown_rank:
        raise InvalidInputError(f"{what}: the tensor's shape must be known")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise InvalidInputError(f"{what}: shape {shape} has a negative size")
    size = math.prod(shape)
    if proto.tensor_content:
        if numpy is object:
            raise InvalidInputError(f"{what}: DT_STRING values go in string_val")
        dtype = np.dtype(numpy).newbyteorder("<")
        if len(proto.tensor_content) != size * dtype.itemsize:
            raise InvalidInputError(
                f"{what}: shape {shape} needs {size * dtype.itemsize} bytes of tensor_content, "
                f"found {len(proto.tensor_content)}"
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = getattr(proto, field)
    if numpy is object:
        flat: Array = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif numpy is np.float16:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(values, dtype=numpy)
    if flat.size == 1 and size > 1:
        flat = np.full(size, flat[0], dtype=flat.dtype)  # one value fills the shape
    if flat.size != size:
        raise InvalidInputError(f"{what}: shape {shape} needs {size} values, found {flat.size}")
    return flat.reshape(shape)


def to_tensor_proto(array: Array) -> Any:
    """An output array as a TensorProto (numbers in tensor_content, as TensorFlow writes)."""
    shape = tf.TensorShapeProto(dim=[tf.TensorShapeProto.Dim(size=d) for d in array.shape])
    if array.dtype.kind in "OSU":
        values = [as_bytes(v) for v in array.reshape(-1)]
        return tf.TensorProto(dtype=tf.DT_STRING, tensor_shape=shape, string_val=values)
    dtype = _BY_NUMPY.get(array.dtype)
    if dtype is None:
        raise InvalidInputError(f"an output of dtype {array.dtype} has no TensorFlow dtype")
    little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
    return tf.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=little.tobytes())


def encode_predict(
    outputs: Batch, output_filter: tuple[str, ...], *, model: str, version: int
) -> Any:
    """The PredictResponse (only the filtered outputs when a filter was given)."""
    names = output_filter or tuple(outputs)
    response = tfs.PredictResponse(model_spec=tfs.ModelSpec(name=model, signature_name=SIGNATURE))
    response.model_spec.version.value = version
    for name in names:
        response.outputs[name].CopyFrom(to_tensor_proto(outputs[name]))
    return response


def check_output_filter(output_filter: tuple[str, ...], outputs: tuple[TensorSpec, ...]) -> None:
    known = {spec.name for spec in outputs}
    unknown = [name for name in output_filter if name not in known]
    if unknown:
        raise InvalidInputError(f"unknown output(s) {unknown}; this model has {sorted(known)}")


def requested_version(spec: Any) -> str | None:
    """The version a ModelSpec names, as REST routes name it (labels as ``label:NAME``)."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return str(spec.version.value)
    if choice == "version_label":
        return "label:" + str(spec.version_label)
    return None
