"""The committed gRPC modules are what the committed .proto files generate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_generated_modules_match_the_protos():
    pytest.importorskip("grpc_tools")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "protos"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_wire_names_are_the_protocols_own():
    from mlkube.serving.grpc.protos import grpc_predict_v2_pb2, tf_framework_pb2, tf_serving_pb2

    v2 = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert v2.full_name == "inference.GRPCInferenceService"
    assert set(v2.methods_by_name) == {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"
    }  # fmt: skip
    predict = tf_serving_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    assert (
        predict.methods_by_name["Predict"].full_name
        == "tensorflow.serving.PredictionService.Predict"
    )
    status = tf_serving_pb2.DESCRIPTOR.services_by_name["ModelService"]
    assert status.methods_by_name["GetModelStatus"].full_name == (
        "tensorflow.serving.ModelService.GetModelStatus"
    )
    tensor = tf_framework_pb2.TensorProto.DESCRIPTOR
    assert tensor.full_name == "tensorflow.TensorProto"
    assert {f.name: f.number for f in tensor.fields}["tensor_content"] == 4
    request = tf_serving_pb2.PredictRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "model_spec": 1, "inputs": 2, "output_filter": 3
    }  # fmt: skip
