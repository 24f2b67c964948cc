"""The committed gRPC modules are what the committed .proto files generate."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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
    assert tensor.full_name == "mlkube.tensorflow.TensorProto"  # not TensorFlow's own
    assert {f.name: f.number for f in tensor.fields}["tensor_content"] == 4
    request = tf_serving_pb2.PredictRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "model_spec": 1, "inputs": 2, "output_filter": 3
    }  # fmt: skip


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="the tensorflow extra is not installed"
)
def test_the_protos_load_beside_tensorflow_in_one_process():
    # A replica serving a TensorFlow model with gRPC on imports both; TensorFlow's own
    # tensorflow.TensorProto once clashed with ours in the descriptor pool.
    code = (
        "import tensorflow\n"
        "from mlkube.serving.grpc.protos import tf_serving_pb2, grpc_predict_v2_pb2\n"
        "from tensorflow.core.framework import tensor_pb2\n"
        "ours = tf_serving_pb2.PredictRequest()\n"
        "ours.inputs['x'].CopyFrom(type(ours.inputs['x'])."
        "FromString(tensorflow.make_tensor_proto([[1.0, 2.0]]).SerializeToString()))\n"
        "back = tensor_pb2.TensorProto.FromString(ours.inputs['x'].SerializeToString())\n"
        "print(tensorflow.make_ndarray(back).tolist())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[[1.0, 2.0]]"
