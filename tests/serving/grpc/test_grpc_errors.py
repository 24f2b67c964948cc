"""Every refusal over gRPC: the status code matching REST's HTTP status, and REST's message.

A real replica with ``server.grpc`` on; each mistake is made over both protocols and the
answers compared. Also: the metadata calls, TF Serving's GetModelStatus, readiness while
draining, and the metrics' ``protocol`` label.
"""

from __future__ import annotations

import asyncio

import grpc
import httpx
import numpy as np
import pytest

from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from mlkube.serving.grpc.protos import tf_framework_pb2 as tf
from mlkube.serving.grpc.protos import tf_serving_pb2 as tfs
from mlkube.serving.grpc.protos import tf_serving_pb2_grpc as tfs_grpc
from mlkube.testing.server import running_replica

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def onnx_grpc(served_models):
    served = served_models["onnx"]
    deployment = served.deployment(
        **{"server.grpc": {"enabled": True}, "server.maxRequestSize": "64Ki"}
    )
    with (
        running_replica(deployment) as replica,
        httpx.Client(base_url=replica.url) as client,
        grpc.insecure_channel(replica.grpc_address) as channel,
    ):
        yield replica, client, channel, deployment.model_name, served.rows


def infer_request(
    name: str, shape: list[int], values: list[float], **fields
) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=fields.pop("input", "input"), datatype=fields.pop("datatype", "FP32"), shape=shape
    )
    tensor.contents.fp32_contents.extend(values)
    return pb.ModelInferRequest(model_name=name, inputs=[tensor], **fields)


def rest_error(client, path: str, body: dict) -> tuple[int, str]:
    response = client.post(path, json=body)
    return response.status_code, response.json()["error"]


def grpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_the_same_mistakes_get_the_same_messages_and_matching_codes(onnx_grpc):
    _, client, channel, name, rows = onnx_grpc
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    cases = [
        # (gRPC request, REST path, REST body, gRPC code)
        (
            infer_request(name, [1, 3], [1.0, 2.0, 3.0]),
            f"/v2/models/{name}/infer",
            {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            infer_request(name, [1, 4], [1.0] * 4, input="nope"),
            f"/v2/models/{name}/infer",
            {"inputs": [{"name": "nope", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            infer_request(name, [1, 4], [1.0] * 3),
            f"/v2/models/{name}/infer",
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1] * 3}]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            infer_request(name, [1, 4], [float("nan")] * 4),
            f"/v2/models/{name}/infer",
            None,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            infer_request("other", [1, 4], [1.0] * 4),
            "/v2/models/other/infer",
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]},
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            infer_request(name, [1, 4], [1.0] * 4, model_version="7"),
            f"/v2/models/{name}/versions/7/infer",
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]},
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            infer_request(name, [1, 4], [1.0] * 4, datatype="FP99"),
            f"/v2/models/{name}/infer",
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP99", "data": [1] * 4}]},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for request, path, body, code in cases:
        error = grpc_error(stub.ModelInfer, request)
        assert error.code() is code, (request, error.details())
        if body is not None:
            status, message = rest_error(client, path, body)
            assert status == {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404}[code.name]
            assert error.details() == message
        else:
            assert "NaN" in error.details()
    # The server keeps serving.
    ok = stub.ModelInfer(infer_request(name, [1, 4], rows[0].tolist()), timeout=30)
    assert ok.outputs


def test_raw_contents_mistakes_are_invalid_argument(onnx_grpc):
    _, _, channel, name, _ = onnx_grpc
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    request = infer_request(name, [1, 4], [])
    request.raw_input_contents.append(np.zeros(3, "<f4").tobytes())  # 12 bytes, not 16
    error = grpc_error(stub.ModelInfer, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 4 values" in error.details()
    request.raw_input_contents.append(b"")  # two raw entries for one input
    error = grpc_error(stub.ModelInfer, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "one per input" in error.details()


def test_a_message_over_max_request_size_is_resource_exhausted(onnx_grpc):
    _, _, channel, name, _ = onnx_grpc
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    rows = 20_000  # 320 kB of FP32 values, over the 64 KiB limit
    error = grpc_error(stub.ModelInfer, infer_request(name, [rows, 4], [0.5] * rows * 4))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_metadata_calls_say_what_rest_says(onnx_grpc):
    _, client, channel, name, _ = onnx_grpc
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=name)).ready
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    rest_server = client.get("/v2").json()
    assert (server.name, server.version) == (rest_server["name"], rest_server["version"])
    assert list(server.extensions) == rest_server["extensions"]
    assert "binary_tensor_data" in rest_server["extensions"]
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=name))
    rest = client.get(f"/v2/models/{name}").json()
    assert metadata.name == rest["name"]
    assert list(metadata.versions) == rest["versions"]
    assert metadata.platform == rest["platform"]
    for tensors, rest_tensors in (
        (metadata.inputs, rest["inputs"]),
        (metadata.outputs, rest["outputs"]),
    ):
        assert [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors
        ] == rest_tensors
    error = grpc_error(stub.ModelReady, pb.ModelReadyRequest(name="other"))
    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_tf_serving_calls_and_their_mistakes(onnx_grpc):
    _, client, channel, name, rows = onnx_grpc
    status_stub = tfs_grpc.ModelServiceStub(channel)
    status = status_stub.GetModelStatus(
        tfs.GetModelStatusRequest(model_spec=tfs.ModelSpec(name=name)), timeout=30
    )
    rest_status = client.get(f"/v1/models/{name}").json()["model_version_status"][0]
    (version,) = status.model_version_status
    assert str(version.version) == rest_status["version"]
    assert tfs.ModelVersionStatus.State.Name(version.state) == rest_status["state"] == "AVAILABLE"
    error = grpc_error(
        status_stub.GetModelStatus, tfs.GetModelStatusRequest(model_spec=tfs.ModelSpec(name="x"))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND

    stub = tfs_grpc.PredictionServiceStub(channel)

    def predict(values, shape, **spec):
        request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name=spec.pop("name", name), **spec))
        request.inputs["input"].CopyFrom(
            tf.TensorProto(
                dtype=tf.DT_FLOAT,
                tensor_shape=tf.TensorShapeProto(
                    dim=[tf.TensorShapeProto.Dim(size=d) for d in shape]
                ),
                float_val=values,
            )
        )
        return request

    good = predict(rows[0].tolist(), [1, 4])
    assert stub.Predict(good, timeout=30).outputs
    filtered = predict(rows[0].tolist(), [1, 4])
    filtered.output_filter.append("label")
    assert list(stub.Predict(filtered, timeout=30).outputs) == ["label"]
    filtered.output_filter.append("nope")
    assert grpc_error(stub.Predict, filtered).code() is grpc.StatusCode.INVALID_ARGUMENT
    wrong_signature = predict(rows[0].tolist(), [1, 4], signature_name="classify")
    error = grpc_error(stub.Predict, wrong_signature)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "signature_name" in error.details()
    wrong_size = predict([1.0, 2.0], [1, 4])
    error = grpc_error(stub.Predict, wrong_size)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 4 values" in error.details()
    wrong_shape = predict([1.0, 2.0, 3.0], [1, 3])
    rest = client.post(f"/v1/models/{name}:predict", json={"inputs": {"input": [[1, 2, 3]]}})
    error = grpc_error(stub.Predict, wrong_shape)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == rest.json()["error"]
    assert grpc_error(stub.Predict, predict([1.0] * 4, [1, 4], name="x")).code() is (
        grpc.StatusCode.NOT_FOUND
    )


def test_metrics_count_grpc_calls_by_protocol_and_code(onnx_grpc):
    _, client, channel, name, _ = onnx_grpc
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    grpc_error(stub.ModelInfer, infer_request(name, [1, 3], [1.0] * 3))
    text = client.get("/metrics").text
    assert 'protocol="grpc-v2"' in text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("mlkube_requests_total")
        and 'protocol="grpc-v2"' in line
        and 'code="400"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_a_draining_server_is_unavailable(served_models):
    served = served_models["onnx"]
    deployment = served.deployment(**{"server.grpc": {"enabled": True}})
    with (
        running_replica(deployment) as replica,
        grpc.insecure_channel(replica.grpc_address) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        replica.loop.call_soon_threadsafe(setattr, replica.replica.app, "draining", True)
        assert not stub.ServerReady(pb.ServerReadyRequest()).ready
        request = infer_request(deployment.model_name, [1, 4], served.rows[0].tolist())
        error = grpc_error(stub.ModelInfer, request)
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "draining" in error.details()


@pytest.fixture(scope="module")
def slow_python(tmp_path_factory):
    from mlkube.spec import load_spec
    from mlkube.testing import models

    built = models.python_model(tmp_path_factory.mktemp("slow-grpc"), module="sleepy_grpc")
    module = built.path / "sleepy_grpc.py"
    source = module.read_text().replace(
        "    def predict(self, batch):\n",
        "    def predict(self, batch):\n        import time; time.sleep(0.5)\n",
    )
    module.write_text(source)
    return load_spec(models.write_spec(built)), built.rows


def _variant(deployment, **server):
    from mlkube.spec import ModelDeployment

    document = deployment.model_dump(by_alias=True, mode="json")
    document["spec"]["server"].update(server, grpc={"enabled": True})
    document["spec"]["model"]["uri"] = deployment.model_path()
    return ModelDeployment.model_validate(document)


def _python_request(deployment, rows) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP64", shape=[1, rows.shape[1]]
    )
    tensor.contents.fp64_contents.extend(rows[0].tolist())
    return pb.ModelInferRequest(model_name=deployment.model_name, inputs=[tensor])


def test_a_slow_prediction_is_deadline_exceeded(slow_python):
    deployment, rows = slow_python
    deployment = _variant(deployment, requestTimeout="200ms")
    with (
        running_replica(deployment) as replica,
        grpc.insecure_channel(replica.grpc_address) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        error = grpc_error(stub.ModelInfer, _python_request(deployment, rows))
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "within 0.2 s" in error.details()


async def test_a_full_queue_is_unavailable(slow_python):
    deployment, rows = slow_python
    deployment = _variant(deployment, maxQueueSize=1)
    with running_replica(deployment) as replica:
        async with grpc.aio.insecure_channel(replica.grpc_address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = _python_request(deployment, rows)
            results = await asyncio.gather(
                *(stub.ModelInfer(request, timeout=30) for _ in range(6)), return_exceptions=True
            )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refused) < len(results)
    assert refused
    assert all(r.code() is grpc.StatusCode.UNAVAILABLE for r in refused)
    assert "queue is full" in refused[0].details()
