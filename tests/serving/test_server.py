"""The real server on 127.0.0.1 (in a thread), with real runtimes, against the libraries."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from mlkube.spec import ModelDeployment
from mlkube.testing.server import running_replica

pytestmark = pytest.mark.integration


RUNTIME_KINDS = ["onnx", "sklearn-skops", "xgboost", "lightgbm", "pytorch", "python"]


def assert_matches(served, outputs: dict[str, np.ndarray]) -> None:
    for name, expected in served.expected.items():
        assert name in outputs, f"{served.name}: output '{name}' missing from {list(outputs)}"
        got = np.asarray(outputs[name])
        if name in served.exact:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def v1_outputs(body: dict) -> dict[str, np.ndarray]:
    predictions = body["predictions"]
    if isinstance(predictions[0], dict):
        return {name: np.array([row[name] for row in predictions]) for name in predictions[0]}
    return {"output": np.array(predictions)}


def v2_outputs(body: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_v1_and_v2_answers_equal_the_library(served_models, kind):
    served = served_models[kind]
    deployment = served.deployment()
    with running_replica(deployment) as replica, httpx.Client(base_url=replica.url) as client:
        name = deployment.model_name
        v1 = client.post(f"/v1/models/{name}:predict", json={"instances": served.rows.tolist()})
        assert v1.status_code == 200, v1.text
        assert_matches(served, v1_outputs(v1.json()))
        metadata = client.get(f"/v2/models/{name}").json()
        input_spec = metadata["inputs"][0]
        v2 = client.post(
            f"/v2/models/{name}/infer",
            json={
                "inputs": [
                    {
                        "name": input_spec["name"],
                        "shape": list(served.rows.shape),
                        "datatype": input_spec["datatype"],
                        "data": served.rows.ravel().tolist(),
                    }
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        assert_matches(served, v2_outputs(v2.json()))
        also_default = client.post(
            "/v1/models/default:predict", json={"instances": served.rows.tolist()}
        )
        assert also_default.json() == v1.json()


def assert_same_answer(batched, alone) -> None:
    if isinstance(alone, dict):
        assert batched.keys() == alone.keys()
        for key in alone:
            assert_same_answer(batched[key], alone[key])
    elif isinstance(alone, list):
        assert len(batched) == len(alone)
        for b, a in zip(batched, alone, strict=True):
            assert_same_answer(b, a)
    elif isinstance(alone, float):
        assert batched == pytest.approx(alone, rel=1e-5, abs=1e-7)
    else:
        assert batched == alone


async def _concurrent_answers(url: str, name: str, rows: np.ndarray) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=32)) as client:

        async def one(i: int) -> dict:
            chunk = rows[i % len(rows) : i % len(rows) + 1 + i % 2]
            response = await client.post(
                f"/v1/models/{name}:predict", json={"instances": chunk.tolist()}
            )
            assert response.status_code == 200, response.text
            return response.json()

        return await asyncio.gather(*(one(i) for i in range(96)))


@pytest.mark.parametrize("kind", RUNTIME_KINDS)
def test_batching_changes_no_answer_under_concurrency(served_models, kind):
    served = served_models[kind]
    answers = {}
    batch_sizes = {}
    for enabled in (True, False):
        deployment = served.deployment(**{"batching.enabled": enabled})
        with running_replica(deployment) as replica:
            answers[enabled] = asyncio.run(
                _concurrent_answers(replica.url, deployment.model_name, served.rows)
            )
            registry = replica.replica.registry
            batch_sizes[enabled] = (
                registry.get_sample_value(
                    "mlkube_batch_size_sum", {"model": deployment.model_name, "revision": "1"}
                ),
                registry.get_sample_value(
                    "mlkube_batch_size_count", {"model": deployment.model_name, "revision": "1"}
                ),
            )
    # Labels must be identical. Float outputs may differ in the last float32 bits: BLAS-style
    # kernels (ONNX Runtime's MLAS, torch) take a different code path for 1 row than for 32,
    # exactly as calling the library in process with those batch sizes does.
    assert len(answers[True]) == len(answers[False])
    for batched, alone in zip(answers[True], answers[False], strict=True):
        assert_same_answer(batched, alone)
    rows_sum, calls = batch_sizes[False]
    assert rows_sum is not None and calls is not None
    assert rows_sum / calls <= 2  # unbatched: one request (1-2 rows) per predict call
    rows_sum, calls = batch_sizes[True]
    assert calls is not None
    assert calls < 96  # batched: concurrent requests really were merged


MALFORMED = [
    pytest.param("POST", "/v1/models/{m}:predict", b"{", 400, id="invalid-json"),
    pytest.param(
        "POST", "/v1/models/{m}:predict", b'{"instances": [[1, 2]]}', 400, id="wrong-width"
    ),
    pytest.param("POST", "/v1/models/{m}:predict", b'{"instances": [[1,2,3,NaN]]}', 400, id="nan"),
    pytest.param(
        "POST", "/v1/models/{m}:predict", b'{"instances": [["a","b","c","d"]]}', 400, id="strings"
    ),
    pytest.param("POST", "/v1/models/{m}:predict", b'{"instance": []}', 400, id="misspelt"),
    pytest.param("POST", "/v1/models/{m}:predict", b"", 400, id="empty-body"),
    pytest.param(
        "POST", "/v1/models/nope:predict", b'{"instances": [[1,2,3,4]]}', 404, id="unknown-model"
    ),
    pytest.param(
        "POST",
        "/v1/models/{m}/versions/9:predict",
        b'{"instances": [[1,2,3,4]]}',
        404,
        id="unknown-version",
    ),
    pytest.param("GET", "/v1/models/{m}:predict", b"", 405, id="get-on-predict"),
    pytest.param("DELETE", "/v2/models/{m}", b"", 405, id="delete-model"),
    pytest.param(
        "POST",
        "/v2/models/{m}/infer",
        b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}',
        400,
        id="v2-shape-mismatch",
    ),
    pytest.param(
        "POST",
        "/v2/models/{m}/infer",
        b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FLOAT", '
        b'"data": [1, 2, 3, 4]}]}',
        400,
        id="v2-bad-datatype",
    ),
    pytest.param("POST", "/v2/models/{m}/infer", b'{"inputs": "x"}', 400, id="v2-inputs-string"),
    pytest.param(
        "POST",
        "/v2/models/{m}/infer",
        b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
        400,
        id="v2-unknown-input-name",
    ),
    pytest.param(
        "POST", "/v1/models/{m}:predict", b'{"instances": [[1, true, 3, 4]]}', 400, id="v1-bool"
    ),
    pytest.param("GET", "/v2/models/{m}/versions/3", b"", 404, id="v2-unknown-version"),
    pytest.param("GET", "/nothing/here", b"", 404, id="unknown-path"),
    pytest.param("POST", "/v1/models/{m}:classify", b'{"examples": []}', 400, id="tf-classify"),
    pytest.param("POST", "/v1/models/{m}:regress", b'{"examples": []}', 400, id="tf-regress"),
]


@pytest.mark.parametrize("verb", ["classify", "regress", "explain"])
def test_tf_serving_verbs_we_do_not_serve_say_so(onnx_replica, verb):
    replica, name = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        response = client.post(f"/v1/models/{name}:{verb}", content=b'{"examples": []}')
    assert response.status_code == 400
    assert f":{verb} is not supported" in response.json()["error"]


@pytest.fixture(scope="module")
def onnx_replica(served_models):
    deployment = served_models["onnx"].deployment(**{"server.maxRequestSize": "64Ki"})
    with running_replica(deployment) as replica:
        yield replica, deployment.model_name


@pytest.mark.parametrize(("method", "path", "body", "status"), MALFORMED)
def test_caller_mistakes_get_a_4xx_in_the_error_shape(onnx_replica, method, path, body, status):
    replica, name = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        response = client.request(method, path.format(m=name), content=body)
        assert response.status_code == status
        assert set(response.json()) == {"error"}
        assert response.json()["error"]
        assert response.headers["x-request-id"]
        # the server keeps serving
        assert client.get("/v2/health/ready").status_code == 200


def test_oversized_body_gets_413_before_it_is_read(onnx_replica):
    replica, name = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        huge = b'{"instances": [' + b"[1,2,3,4]," * 20000 + b"[1,2,3,4]]}"
        response = client.post(f"/v1/models/{name}:predict", content=huge)
        assert response.status_code == 413
        assert "limit" in response.json()["error"]
    with httpx.Client(base_url=replica.url) as client:
        assert client.get("/v2/health/live").status_code == 200


def test_request_id_is_taken_from_the_header_or_generated(onnx_replica):
    replica, _ = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        given = client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        generated = {client.get("/v2/health/live").headers["x-request-id"] for _ in range(3)}
        assert len(generated) == 3


def test_metadata_endpoints_describe_the_model(onnx_replica):
    replica, name = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        v2 = client.get(f"/v2/models/{name}").json()
        assert v2["name"] == name and v2["versions"] == ["1"]
        assert v2["inputs"][0]["shape"] == [-1, 4]
        assert v2["device"] == "cpu" and "device_reason" not in v2  # no GPU given
        v1 = client.get("/v1/models/default/metadata").json()
        signature = v1["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"][v2["inputs"][0]["name"]]["dtype"] == "DT_FLOAT"
        status = client.get(f"/v1/models/{name}").json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}


def test_metrics_count_requests_by_code(onnx_replica):
    replica, name = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        client.post(f"/v1/models/{name}:predict", content=b"{")
        text = client.get("/metrics").text
    assert 'mlkube_requests_total{code="400"' in text
    assert "mlkube_request_duration_seconds_bucket" in text
    assert f'mlkube_model_ready{{model="{name}",revision="1"}} 1.0' in text
    assert "process_resident_memory_bytes" in text


def test_pipelined_requests_are_answered_in_order(onnx_replica):
    import socket
    from urllib.parse import urlsplit

    replica, name = onnx_replica
    address = urlsplit(replica.url)
    bodies = [json.dumps({"instances": [[float(i), 1, 1, 1]]}).encode() for i in range(5)]
    raw = b"".join(
        f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: r{i}\r\n"
        f"Content-Length: {len(b)}\r\n\r\n".encode()
        + b
        for i, b in enumerate(bodies)
    )
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(raw)
        received = b""
        while received.count(b"HTTP/1.1 200") < 5 or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            received += chunk
    ids = [
        line.split(b": ")[1]
        for line in received.split(b"\r\n")
        if line.lower().startswith(b"x-request-id")
    ]
    assert ids == [f"r{i}".encode() for i in range(5)]


def test_garbage_bytes_get_400_and_the_server_survives(onnx_replica):
    import socket
    from urllib.parse import urlsplit

    replica, _ = onnx_replica
    address = urlsplit(replica.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    with httpx.Client(base_url=replica.url) as client:
        assert client.get("/v2/health/live").status_code == 200


@pytest.fixture(scope="module")
def slow_python_spec(tmp_path_factory):
    from mlkube.spec import load_spec
    from mlkube.testing import models

    built = models.python_model(tmp_path_factory.mktemp("slow"), module="sleepy_model")
    module = built.path / "sleepy_model.py"
    source = module.read_text().replace(
        "    def predict(self, batch):\n",
        "    def predict(self, batch):\n        import time; time.sleep(0.5)\n",
    )
    module.write_text(source)
    path = models.write_spec(built)
    return load_spec(path), built.rows


def _variant(deployment, **server):
    from mlkube.spec import ModelDeployment

    document = deployment.model_dump(by_alias=True, mode="json")
    document["spec"]["server"].update(server)
    document["spec"]["model"]["uri"] = deployment.model_path()
    return ModelDeployment.model_validate(document)


def test_a_slow_prediction_gets_504_in_the_error_shape(slow_python_spec):
    deployment, rows = slow_python_spec
    deployment = _variant(deployment, requestTimeout="200ms")
    with running_replica(deployment) as replica, httpx.Client(base_url=replica.url) as client:
        response = client.post(
            f"/v1/models/{deployment.model_name}:predict",
            json={"instances": rows[:1].tolist()},
            timeout=10,
        )
        assert response.status_code == 504
        assert "within 0.2 s" in response.json()["error"]


async def test_a_full_queue_gets_429_with_retry_after(slow_python_spec):
    deployment, rows = slow_python_spec
    deployment = _variant(deployment, maxQueueSize=1)
    with running_replica(deployment) as replica:
        async with httpx.AsyncClient(base_url=replica.url, timeout=20) as client:
            url = f"/v1/models/{deployment.model_name}:predict"
            body = {"instances": rows[:1].tolist()}
            responses = await asyncio.gather(*(client.post(url, json=body) for _ in range(6)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes
    refused = [r for r in responses if r.status_code == 429]
    assert refused, codes
    assert int(refused[0].headers["retry-after"]) >= 1
    assert "queue is full" in refused[0].json()["error"]


def test_head_gets_headers_without_a_body_and_the_connection_stays_usable(onnx_replica):
    replica, _ = onnx_replica
    with httpx.Client(base_url=replica.url) as client:
        head = client.head("/v2/health/live")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert client.get("/v2/health/live").json() == {"live": True}


def test_payloads_are_logged_redacted_only_when_asked(served_models):
    import io

    served = served_models["python"]
    rows = served.rows[:1].tolist()
    lines = {}
    for payloads in (False, True):
        deployment = served.deployment(
            **{
                "logging.requests": {
                    "payloads": payloads,
                    "payloadSampleRate": 1.0,
                    "redactFields": ["secret"],
                }
            }
        )
        stream = io.BytesIO()
        with (
            running_replica(deployment, access_log=stream) as replica,
            httpx.Client(base_url=replica.url) as client,
        ):
            response = client.post(
                f"/v1/models/{deployment.model_name}:predict",
                json={"instances": rows, "signature_name": "serving_default"},
                headers={"x-request-id": "payload-1"},
            )
            assert response.status_code == 200
            client.post(
                f"/v1/models/{deployment.model_name}:predict",
                content=json.dumps({"instances": rows, "secret": "hunter2"}),
                headers={"x-request-id": "payload-2"},
            )
        lines[payloads] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert not [line for line in lines[False] if line["msg"] == "payload"]
    logged = [line for line in lines[True] if line["msg"] == "payload"]
    assert [line["request_id"] for line in logged] == ["payload-1", "payload-2"]
    assert logged[0]["request"]["instances"] == rows
    assert "predictions" in logged[0]["response"]
    assert "hunter2" not in json.dumps(logged[1])
    assert logged[1]["status"] == 400


def test_expect_100_continue_is_answered_at_once(onnx_replica):
    import socket
    from urllib.parse import urlsplit

    replica, name = onnx_replica
    address = urlsplit(replica.url)
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 40}).encode()
    head = (
        f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_probes_are_logged_only_when_they_fail(served_models):
    import io

    deployment = served_models["onnx"].deployment()
    stream = io.BytesIO()
    with (
        running_replica(deployment, access_log=stream) as replica,
        httpx.Client(base_url=replica.url) as client,
    ):
        client.get("/v2/health/ready")
        client.get("/metrics")
        client.get("/v2/models/nope/ready")
        client.post(f"/v1/models/{deployment.model_name}:predict", content=b"{")
    paths = [json.loads(line)["path"] for line in stream.getvalue().splitlines()]
    assert paths == ["/v2/models/nope/ready", f"/v1/models/{deployment.model_name}:predict"]


def _user_model(folder, module: str, predict_body: str, **server) -> ModelDeployment:
    """A python model ``module:Model`` (x: FP64 [-1, 2] → y = 2·x) whose predict runs
    ``predict_body`` first (with ``x`` bound); module-level ENTERED / RELEASE / FINISHED
    threading events let a test see and steer a call in progress."""
    import textwrap

    import yaml

    from mlkube.spec import API_VERSION, load_spec

    folder.mkdir(parents=True, exist_ok=True)
    source = (
        "import threading\n"
        "from mlkube.errors import InvalidInputError\n"
        "ENTERED, RELEASE, FINISHED = threading.Event(), threading.Event(), threading.Event()\n"
        "class Model:\n"
        "    inputs = [{'name': 'x', 'datatype': 'FP64', 'shape': [-1, 2]}]\n"
        "    outputs = [{'name': 'y', 'datatype': 'FP64', 'shape': [-1, 2]}]\n"
        "    def predict(self, batch):\n"
        "        x = batch['x']\n"
        + textwrap.indent(textwrap.dedent(predict_body), " " * 8)
        + "        return {'y': x * 2}\n"
    )
    (folder / f"{module}.py").write_text(source)
    document = {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": module.replace("_", "-")},
        "spec": {
            "model": {"uri": ".", "format": "python", "entrypoint": f"{module}:Model"},
            "server": server,
        },
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_spec(path)


def test_probes_and_metrics_answer_while_a_prediction_runs(tmp_path):
    """The model is fast on the warm-up zeros, then blocks on x == 99 until released: the
    probes must answer while it is blocked (before the prediction can have finished)."""
    import sys
    import threading

    deployment = _user_model(
        tmp_path / "m",
        "blocking_probe_model",
        """
        if (x == 99).any():
            ENTERED.set()
            RELEASE.wait(20)
            FINISHED.set()
        """,
    )
    with running_replica(deployment) as replica, httpx.Client(base_url=replica.url) as client:
        model = sys.modules["blocking_probe_model"]
        answers: list[httpx.Response] = []
        url = f"/v1/models/{deployment.model_name}:predict"
        predicting = threading.Thread(
            target=lambda: answers.append(
                httpx.post(replica.url + url, json={"instances": [[99, 99]]}, timeout=30)
            )
        )
        predicting.start()
        try:
            assert model.ENTERED.wait(20)
            live = client.get("/v2/health/live", timeout=30)
            metrics = client.get("/metrics", timeout=30)
            # answered while the model was still blocked: the loop was free
            assert not model.FINISHED.is_set()
        finally:
            model.RELEASE.set()
            predicting.join(30)
        assert live.status_code == 200
        assert metrics.status_code == 200
        assert answers[0].status_code == 200
        assert answers[0].json() == {"predictions": [[198.0, 198.0]]}


def test_request_timeout_holds_for_a_python_model_fast_on_its_warm_up(tmp_path):
    import sys

    deployment = _user_model(
        tmp_path / "m",
        "sleepy_on_one_input_model",
        """
        if (x == 99).any():
            RELEASE.wait(5)
        """,
        requestTimeout="200ms",
    )
    with running_replica(deployment) as replica, httpx.Client(base_url=replica.url) as client:
        url = f"/v1/models/{deployment.model_name}:predict"
        try:
            response = client.post(url, json={"instances": [[99, 99]]}, timeout=30)
            answered_before_release = not sys.modules["sleepy_on_one_input_model"].RELEASE.is_set()
        finally:
            sys.modules["sleepy_on_one_input_model"].RELEASE.set()
        assert response.status_code == 504
        assert "within 0.2 s" in response.json()["error"]
        assert answered_before_release


def test_poisoned_requests_fail_alone_and_never_leak_their_error(tmp_path):
    """3 requests the model raises on, among 64 good ones, all sent at once."""
    deployment = _user_model(
        tmp_path / "m",
        "poisoned_model",
        """
        import time
        time.sleep(0.02)  # requests pile up behind each call and merge
        bad = x[x[:, 0] < 0][:, 0].tolist()
        if bad:
            raise ValueError(f"cannot score {bad}")
        if (x[:, 0] == 1000).any():
            raise InvalidInputError("x = 1000 is out of range")
        """,
    )
    values = [float(i) for i in range(64)]
    for poisoned in (5, 30, 60):
        values.insert(poisoned, -float(poisoned))
    values.insert(40, 1000.0)

    async def send_all(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=80)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            path = f"/v1/models/{deployment.model_name}:predict"
            return await asyncio.gather(
                *(client.post(path, json={"instances": [[v, v]]}) for v in values)
            )

    with running_replica(deployment) as replica:
        responses = asyncio.run(send_all(replica.url))
        batches = replica.replica.registry.get_sample_value(
            "mlkube_batch_requests_count", {"model": deployment.model_name, "revision": "1"}
        )
    for value, response in zip(values, responses, strict=True):
        if value == 1000:
            assert response.status_code == 400, response.text
            assert response.json() == {"error": "x = 1000 is out of range"}
        elif value < 0:
            assert response.status_code == 500, response.text
            assert response.json()["error"].endswith(f"cannot score [{value}]")
        else:
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": [[2 * value, 2 * value]]}
    assert batches is not None and batches < len(values)  # requests did share batches
