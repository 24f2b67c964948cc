"""``mlkube serve`` as a user runs it: a real process, signals, and one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlkube.testing import models

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def iris_spec(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("iris")
    return models.write_spec(models.save_onnx(models.iris_classifier(), folder, "iris"))


def start(spec: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlkube", "serve", str(spec), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("server did not become ready")


def stop(process: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    return process.returncode, out.decode(), err.decode()


def test_serve_prints_where_it_listens_and_answers(iris_spec):
    port = free_port()
    process = start(iris_spec, "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        answer = httpx.post(
            f"{url}/v1/models/iris:predict",
            json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        )
        assert [p["label"] for p in answer.json()["predictions"]] == [0, 2]
    finally:
        code, out, err = stop(process)
    assert code == 0
    assert f"listening on http://127.0.0.1:{port}" in err
    assert "ready in" in err
    import json

    lines = [json.loads(line) for line in out.splitlines()]
    access = [line for line in lines if line.get("msg") == "request"]
    assert access and access[-1]["path"] == "/v1/models/iris:predict"
    assert {"ts", "level", "request_id", "duration_ms", "status"} <= access[-1].keys()


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    built = models.python_model(tmp_path / "slow", module="slow_model")
    source = (built.path / "slow_model.py").read_text()
    source = source.replace(
        "    def predict(self, batch):\n",
        "    def predict(self, batch):\n        import time; time.sleep(1.0)\n",
    )
    (built.path / "slow_model.py").write_text(source)
    spec = models.write_spec(built)
    port = free_port()
    process = start(spec, "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        result: dict[str, httpx.Response] = {}
        rows = built.rows[:1].tolist()
        worker = threading.Thread(
            target=lambda: result.setdefault(
                "r",
                httpx.post(
                    f"{url}/v1/models/slow-model-linearmodel:predict",
                    json={"instances": rows},
                    timeout=10,
                ),
            )
        )
        worker.start()
        time.sleep(0.4)  # the request is now inside predict
        process.send_signal(signal.SIGTERM)
        worker.join(10)
        assert result["r"].status_code == 200
        code, _, err = finish(process)  # it exits by itself after the drain
    finally:
        if process.poll() is None:
            stop(process)
    assert code == 0
    assert "draining" in err


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    """Wait for a process that is expected to exit by itself."""
    out, err = process.communicate(timeout=60)
    return process.returncode, out.decode(), err.decode()


def test_port_in_use_is_one_clear_line(iris_spec):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(iris_spec, "--port", str(port))
        code, _, err = finish(process)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is already in use; stop whatever listens there "
        "or pick another with --port"
    )
    assert "Traceback" not in err


def test_bad_spec_exits_2_with_the_problem(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\n"
        "metadata: {name: x}\nspec:\n  model: {uri: m.onnx, format: onnx}\n"
        "  replicas: many\n"
    )
    code, _, err = finish(start(spec))
    assert code == 2
    assert "bad.yaml:6: spec.replicas" in err
    assert "Traceback" not in err


def test_corrupt_model_exits_1_naming_file_and_format(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x07garbage")
    spec = tmp_path / "broken.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\n"
        "metadata: {name: broken}\nspec:\n  model: {uri: broken.onnx, format: onnx}\n"
    )
    code, _, err = finish(start(spec, "--port", str(free_port())))
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot load onnx model from")
    assert "broken.onnx" in last
    assert "Traceback" not in err


def test_workers_share_the_port_and_stop_together(iris_spec):
    port = free_port()
    process = start(iris_spec, "--port", str(port), "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        deadline = time.monotonic() + 20
        pids: set[str] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client() as client:  # a new connection lands on either worker
                response = client.get(f"{url}/v2/health/live")
                pids.add(response.headers["x-request-id"].split("-")[0])
        assert len(pids) == 2
    finally:
        code, _, err = stop(process)
    assert code == 0
    assert "2 workers ready" in err
    assert all(not _alive(int(pid, 16)) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_SLOW_SECOND_LOADER = """
import os
import time
from pathlib import Path

HERE = Path(__file__).parent


class Model:
    inputs = [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}]
    outputs = [{"name": "y", "datatype": "FP64", "shape": [-1, 2]}]

    def load(self):
        # The first process to load is fast; every other one waits for the test's go.
        try:
            os.close(os.open(HERE / "first-loader", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            deadline = time.monotonic() + 60
            while not (HERE / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)

    def predict(self, batch):
        return {"y": batch["x"] * 2}
"""


def test_a_worker_still_loading_gets_no_connection_and_readiness_waits_for_it(tmp_path):
    (tmp_path / "slow_second_loader.py").write_text(_SLOW_SECOND_LOADER)
    no_rows = np.zeros((0, 2))
    built = models.BuiltModel(
        tmp_path, "python", None, no_rows, entrypoint="slow_second_loader:Model"
    )
    spec = models.write_spec(built, name="slow-second")
    port = free_port()
    process = start(spec, "--port", str(port), "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    predict = f"{url}/v1/models/slow-second:predict"
    body = {"instances": [[1, 2]]}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:  # until the fast worker answers a prediction
            assert process.poll() is None
            try:
                if httpx.post(predict, json=body, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        # One worker is ready, the other still loading: each request on a new connection.
        predictions = [httpx.post(predict, json=body, timeout=5).status_code for _ in range(20)]
        readiness = [httpx.get(f"{url}/v2/health/ready", timeout=5).status_code for _ in range(10)]
        assert predictions == [200] * 20
        assert readiness == [503] * 10
        (tmp_path / "release").touch()
        wait_ready(url, process)
    finally:
        (tmp_path / "release").touch()
        code, _, err = stop(process)
    assert code == 0, err
    assert "2 workers ready" in err


_NEVER_DONE_LOADER = """
import time
from pathlib import Path

HERE = Path(__file__).parent


class Model:
    inputs = [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}]
    outputs = [{"name": "y", "datatype": "FP64", "shape": [-1, 2]}]

    def load(self):
        # A large model's load: far longer than the test waits for the process to stop.
        (HERE / "loading").touch()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.05)

    def predict(self, batch):
        return {"y": batch["x"] * 2}
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_while_the_model_loads_stops_the_server_without_waiting_for_the_load(
    tmp_path, workers
):
    # The load ran in the event loop's default executor, which asyncio.run and the interpreter
    # both wait for at exit: a replica stopped while loading lived until its load ended.
    (tmp_path / "never_done.py").write_text(_NEVER_DONE_LOADER)
    built = models.BuiltModel(
        tmp_path, "python", None, np.zeros((0, 2)), entrypoint="never_done:Model"
    )
    spec = models.write_spec(built, name="never-done")
    port = free_port()
    process = start(spec, "--port", str(port), "--workers", workers)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (tmp_path / "loading").exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the model's load never began"
            time.sleep(0.05)
        # stop() waits at most 30 s, a tenth of the load: a process that waits for it fails.
        code, _, err = stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, err
