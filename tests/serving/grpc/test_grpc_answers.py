"""gRPC answers equal REST answers, for every runtime the tests can build.

A real replica (``running_replica``) with ``server.grpc`` on; the same rows go over REST v1,
REST v2, gRPC v2 (typed and raw contents) and TF Serving's gRPC Predict, and every answer
must be the same arrays.
"""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest

from mlkube.serving.grpc import tf_codec
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from mlkube.serving.grpc.protos import tf_framework_pb2 as tf
from mlkube.serving.grpc.protos import tf_serving_pb2 as tfs
from mlkube.serving.grpc.protos import tf_serving_pb2_grpc as tfs_grpc
from mlkube.testing.server import running_replica

pytestmark = pytest.mark.integration

RUNTIME_KINDS = ["onnx", "sklearn-skops", "xgboost", "lightgbm", "pytorch", "python"]
_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def rest_v2(client: httpx.Client, name: str, spec: dict, rows: np.ndarray) -> dict:
    body = {
        "inputs": [
            {
                "name": spec["name"],
                "shape": list(rows.shape),
                "datatype": spec["datatype"],
                "data": rows.ravel().tolist(),
            }
        ]
    }
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def grpc_v2(channel: grpc.Channel, name: str, spec: dict, rows: np.ndarray, *, raw: bool) -> dict:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    values = rows.astype(_NUMPY[spec["datatype"]])
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=spec["name"], datatype=spec["datatype"], shape=list(rows.shape)
    )
    request = pb.ModelInferRequest(model_name=name, inputs=[tensor], id="r-1")
    if raw:
        request.raw_input_contents.append(values.astype(values.dtype.newbyteorder("<")).tobytes())
    else:
        field = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents"}
        getattr(request.inputs[0].contents, field[spec["datatype"]]).extend(values.ravel().tolist())
    response = stub.ModelInfer(request, timeout=30)
    assert response.id == "r-1"
    assert response.model_name == name
    return v2_arrays(response)


def v2_arrays(response) -> dict:
    arrays = {}
    for position, output in enumerate(response.outputs):
        if response.raw_output_contents:
            dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}
            if output.datatype == "BYTES":
                raise AssertionError("no BYTES outputs in these models")
            flat = np.frombuffer(
                response.raw_output_contents[position], dtype=dtype[output.datatype]
            )
        else:
            contents = output.contents
            flat = np.array(
                contents.fp32_contents
                or contents.fp64_contents
                or contents.int64_contents
                or contents.int_contents
                or contents.bytes_contents
            )
        arrays[output.name] = flat.reshape(list(output.shape))
    return arrays


def tf_predict(channel: grpc.Channel, name: str, input_name: str, rows: np.ndarray) -> dict:
    stub = tfs_grpc.PredictionServiceStub(channel)
    request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name=name))
    request.inputs[input_name].CopyFrom(
        tf.TensorProto(
            dtype=tf.DT_DOUBLE,
            tensor_shape=tf.TensorShapeProto(
                dim=[tf.TensorShapeProto.Dim(size=d) for d in rows.shape]
            ),
            double_val=rows.astype(np.float64).ravel().tolist(),
        )
    )
    response = stub.Predict(request, timeout=30)
    assert response.model_spec.name == name
    return {key: tf_codec.to_ndarray(proto, key) for key, proto in response.outputs.items()}


def assert_same(rest: dict, grpc_arrays: dict) -> None:
    """Equal values: JSON writes each number in the shortest form that reads back as the same
    value of the model's dtype, so REST's values cast to gRPC's (typed) dtype are exact."""
    assert set(grpc_arrays) == set(rest)
    for key, got in grpc_arrays.items():
        got = np.asarray(got)
        assert got.shape == rest[key].shape
        np.testing.assert_array_equal(got, rest[key].astype(got.dtype))


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_grpc_answers_equal_rest_answers(served_models, kind):
    served = served_models[kind]
    deployment = served.deployment(**{"server.grpc": {"enabled": True}})
    with (
        running_replica(deployment) as replica,
        httpx.Client(base_url=replica.url) as client,
        grpc.insecure_channel(replica.grpc_address) as channel,
    ):
        name = deployment.model_name
        spec = client.get(f"/v2/models/{name}").json()["inputs"][0]
        rest = rest_v2(client, name, spec, served.rows)
        assert_same(rest, grpc_v2(channel, name, spec, served.rows, raw=False))
        assert_same(rest, grpc_v2(channel, name, spec, served.rows, raw=True))
        v1 = client.post(
            f"/v1/models/{name}:predict", json={"inputs": {spec["name"]: served.rows.tolist()}}
        ).json()["outputs"]
        v1_arrays = (
            {k: np.array(v) for k, v in v1.items()}
            if isinstance(v1, dict)
            else {next(iter(rest)): np.array(v1)}
        )
        assert_same(v1_arrays, tf_predict(channel, name, spec["name"], served.rows))
