"""gRPC through the local balancer, end to end: `mlkube up` with server.grpc on, real replicas,
the balancer's L4 pass-through spreading connections over the ready replicas round robin."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import grpc
import pytest

from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from mlkube.serving.grpc.protos import tf_framework_pb2 as tf
from mlkube.serving.grpc.protos import tf_serving_pb2 as tfs
from mlkube.serving.grpc.protos import tf_serving_pb2_grpc as tfs_grpc

from .conftest import ROW, Local, free_port, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _grpc_calls(port: int) -> float:
    """The gRPC v2 calls a replica counted (its own /metrics)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlkube_requests_total{") and 'protocol="grpc-v2"' in line
    )


def _channel(port: int) -> grpc.Channel:
    """A channel with its own connection: grpcio shares connections between channels to the
    same address unless told not to."""
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


def _infer(channel: grpc.Channel) -> pb.ModelInferResponse:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend(ROW)
    request = pb.ModelInferRequest(model_name="iris", inputs=[tensor])
    return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def test_grpc_through_the_balancer_spreads_connections_over_ready_replicas(
    local: Local, tmp_path: Path, iris_onnx: Path
) -> None:
    port, grpc_port = free_port(), free_port()
    spec = write_spec(
        tmp_path / "iris.yaml",
        "iris",
        {"uri": str(iris_onnx), "format": "onnx"},
        replicas=2,
        service={"port": port, "grpcPort": grpc_port},
        server={"drainTimeout": "5s", "grpc": {"enabled": True}},
    )
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    status = local.deployment("iris")
    assert status["grpcPort"] == grpc_port
    replicas = {r["name"]: r for r in status["replicas"]}
    assert all(r["grpcPort"] for r in replicas.values())
    # REST's answer for the same row, through the HTTP balancer.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/v2/models/iris/infer",
        body=b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}',
    )
    rest = json.loads(conn.getresponse().read())
    conn.close()
    labels = []
    for _ in range(6):  # six connections: round robin gives each replica three
        with _channel(grpc_port) as channel:
            answer = _infer(channel)
            labels.append(list(answer.outputs[0].contents.int64_contents))
    assert labels == [rest["outputs"][0]["data"]] * 6
    counts = {name: _grpc_calls(r["port"]) for name, r in replicas.items()}
    assert sorted(counts.values()) == [3.0, 3.0], counts
    # One connection stays with one replica (as with a Kubernetes Service).
    with _channel(grpc_port) as channel:
        for _ in range(4):
            _infer(channel)
    after = {name: _grpc_calls(r["port"]) for name, r in replicas.items()}
    assert sorted(after[n] - counts[n] for n in after) == [0.0, 4.0], after
    # TF Serving's Predict through the same port.
    with _channel(grpc_port) as channel:
        request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name="iris"))
        request.inputs["input"].CopyFrom(
            tf.TensorProto(
                dtype=tf.DT_FLOAT,
                tensor_shape=tf.TensorShapeProto(
                    dim=[tf.TensorShapeProto.Dim(size=1), tf.TensorShapeProto.Dim(size=4)]
                ),
                float_val=ROW,
            )
        )
        response = tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert set(response.outputs) == {o["name"] for o in rest["outputs"]}
    # Scaled to one replica: every new connection reaches the one left.
    local.cli("scale", "iris", "1")
    local.wait_ready("iris", 1)
    for _ in range(3):
        with _channel(grpc_port) as channel:
            assert _infer(channel).outputs
