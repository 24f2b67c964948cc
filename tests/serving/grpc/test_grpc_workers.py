"""A multi-worker replica (``mlkube serve --workers 2``) shares its gRPC port between the
workers as it shares the HTTP port, and a port another process holds is one clear error."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from mlkube.testing import models
from mlkube.testing.local import IRIS_ROW

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("grpc-workers")
    path = models.write_spec(models.save_onnx(models.iris_classifier(), folder))
    document = yaml.safe_load(path.read_text())
    document["spec"].setdefault("server", {})["grpc"] = {"enabled": True}
    path.write_text(yaml.safe_dump(document))
    return path, document["metadata"]["name"]


def _serve(spec: Path, port: int, grpc_port: int, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlkube",
            "serve",
            str(spec),
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_workers_share_the_grpc_port(spec):
    path, name = spec
    port, grpc_port = free_port(), free_port()
    server = _serve(path, port, grpc_port, 2)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
        tensor.contents.fp32_contents.extend(IRIS_ROW)
        request = pb.ModelInferRequest(model_name=name, inputs=[tensor])
        for _ in range(6):  # new connections: each may reach either worker
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=options) as channel:
                answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
                assert answer.outputs
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert f"gRPC on {grpc_port}" in stderr.decode()


def test_a_grpc_port_in_use_is_one_clear_error(spec):
    path, _ = spec
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _serve(path, free_port(), taken.getsockname()[1], 1)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode != 0
    assert "already in use" in stderr.decode()
    assert "--grpc-port" in stderr.decode()
    assert "Traceback" not in stderr.decode()
