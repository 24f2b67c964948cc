"""The guide's own spec (examples/k8s-ml-guide) runs locally with the tensorflow extra.

The guide's model comes from a hub this machine cannot reach, so TF Serving's half_plus_two is
built at test time where the guide puts its model: the PersistentVolume's hostPath, under
``default/1`` (TF Serving's model base path ``/models/default``, version 1). Only the
hostPath and the port change: the spec is otherwise the example's, word for word.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlkube.testing.local import LocalController

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = Path(__file__).resolve().parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _guide_spec(folder: Path, host_path: Path, port: int) -> Path:
    text = SPEC.read_text()
    assert text.count("hostPath: /mnt/ml-models") == 1
    assert text.count("port: 8501") == 1
    text = text.replace("hostPath: /mnt/ml-models", f"hostPath: {host_path}")
    spec = folder / "spec.yaml"
    spec.write_text(text.replace("port: 8501", f"port: {port}"))
    return spec


def test_the_guides_spec_validates_for_local(tmp_path):
    spec = _guide_spec(tmp_path, tmp_path / "ml-models", 8501)
    done = subprocess.run(
        [sys.executable, "-m", "mlkube", "validate", "--target", "local", str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unsupported" not in done.stdout + done.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="the tensorflow extra is not installed (pip install 'mlkube[tensorflow]')",
)
def test_the_guides_spec_serves_a_saved_model_locally(tmp_path):
    from mlkube.testing.tensorflow_models import half_plus_two_scalars

    host_path = tmp_path / "ml-models"
    half_plus_two_scalars(host_path / "default")  # the node's /mnt/ml-models/default/1
    port = _free_port()
    local = LocalController(tmp_path / "state", {"MLKUBE_RECONCILE_PERIOD_S": "0.1"})
    try:
        local.run("up", "-d", str(_guide_spec(tmp_path, host_path, port)))
        local.wait("a ready replica", lambda: local.deployment("ml/ml-model")["ready"] == 1, 120)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"instances": [1.0, 2.0, 5.0]})
        conn.request("POST", "/v1/models/default:predict", body)
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
        assert response.status == 200, answer
        assert answer == {"predictions": [2.5, 3.0, 4.5]}  # TF Serving's documented answer
    finally:
        local.cleanup()
