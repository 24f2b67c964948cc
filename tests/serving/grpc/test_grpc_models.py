"""gRPC addresses the models and versions of a model set as REST does: the same lookup
(``ModelSet.lookup`` through ``InferenceApp.served``), so the same answers and refusals."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from mlkube.serving.grpc.protos import tf_framework_pb2 as tf
from mlkube.serving.grpc.protos import tf_serving_pb2 as tfs
from mlkube.serving.grpc.protos import tf_serving_pb2_grpc as tfs_grpc
from mlkube.spec import load_spec
from mlkube.testing import models
from mlkube.testing.local import IRIS_ROW
from mlkube.testing.server import running_replica

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_set(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("grpc-repository")
    iris = models.iris_classifier()
    for version in ("1", "2"):
        models.save_onnx(iris, root / "iris" / version)
    models.save_onnx(models.regressor(), root, "reg")
    spec = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "shop"},
        "spec": {
            "models": [
                {"name": "iris", "uri": "iris", "format": "onnx", "versionPolicy": {"latest": 2}},
                {"name": "reg", "uri": "reg.onnx", "format": "onnx", "version": 7},
            ],
            "server": {"grpc": {"enabled": True}, "versionPollInterval": 0},
        },
    }
    (root / "shop.yaml").write_text(yaml.safe_dump(spec))
    deployment = load_spec(root / "shop.yaml")
    with (
        running_replica(deployment) as replica,
        httpx.Client(base_url=replica.url) as client,
        grpc.insecure_channel(replica.grpc_address) as channel,
    ):
        yield client, channel


def _infer(name: str, version: str = "") -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend(IRIS_ROW)
    return pb.ModelInferRequest(model_name=name, model_version=version, inputs=[tensor])


def test_grpc_reaches_each_model_and_version_as_rest_does(model_set):
    client, channel = model_set
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]}
    for name, version in (("iris", ""), ("iris", "1"), ("iris", "2"), ("default", "")):
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        rest = client.post(path, json=body).json()
        answer = stub.ModelInfer(_infer(name, version), timeout=30)
        assert (answer.model_name, answer.model_version) == (
            rest["model_name"],
            rest["model_version"],
        )
    assert stub.ModelInfer(_infer("iris"), timeout=30).model_version == "2"
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(_infer("iris", "3"), timeout=30)
    rest = client.post("/v2/models/iris/versions/3/infer", json=body)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == rest.json()["error"]
    reg = stub.ModelMetadata(pb.ModelMetadataRequest(name="reg", version="7"))
    assert (reg.name, list(reg.versions)) == ("reg", ["7"])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="reg", version="8"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == client.get("/v2/models/reg/versions/8").json()["error"]
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"))
    assert list(metadata.versions) == client.get("/v2/models/iris").json()["versions"]
    assert list(metadata.versions) == ["1", "2"]
    assert stub.ModelReady(pb.ModelReadyRequest(name="iris", version="1")).ready


def test_tf_serving_calls_name_versions_and_report_every_one(model_set):
    client, channel = model_set
    status = tfs_grpc.ModelServiceStub(channel).GetModelStatus(
        tfs.GetModelStatusRequest(model_spec=tfs.ModelSpec(name="iris")), timeout=30
    )
    rest = client.get("/v1/models/iris").json()["model_version_status"]
    assert [
        (str(s.version), tfs.ModelVersionStatus.State.Name(s.state))
        for s in status.model_version_status
    ] == [(s["version"], s["state"]) for s in rest]
    request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name="iris"))
    request.model_spec.version.value = 1
    request.inputs["input"].CopyFrom(
        tf.TensorProto(
            dtype=tf.DT_FLOAT,
            tensor_shape=tf.TensorShapeProto(
                dim=[tf.TensorShapeProto.Dim(size=1), tf.TensorShapeProto.Dim(size=4)]
            ),
            float_val=IRIS_ROW,
        )
    )
    answer = tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert answer.model_spec.version.value == 1
    assert answer.model_spec.name == "iris"
