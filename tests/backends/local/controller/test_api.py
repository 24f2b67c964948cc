"""The control API against the real server on loopback: a Controller in this process (no
replicas), the Starlette app under uvicorn, the httpx client, and raw sockets for the requests
a well-behaved client never sends. Every refusal is checked for its status and its
``{"error": ...}``, and the controller must answer ``/healthz`` after each one."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.backends.local.controller import handlers
from mlkube.backends.local.controller.api import (
    MAX_BODY_BYTES,
    Client,
    ControllerNotRunningError,
    write_token,
)
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment, revision_of
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.server import INTERNAL_ERROR, build_app, serve_api
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Router
from mlkube.desired.rollout import RolloutState
from mlkube.errors import BackendError
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.loading import parse_documents
from mlkube.testing.control_api import served

METRICS = b"mlkube_up 1\n"


def test_token_file_is_created_readable_by_its_owner_only(tmp_path):
    token = write_token(tmp_path)
    mode = stat.S_IMODE((tmp_path / "token").stat().st_mode)
    assert mode == 0o600
    assert (tmp_path / "token").read_text() == token
    assert write_token(tmp_path) != token, "each controller gets a fresh token"


def test_client_refuses_a_token_file_others_can_read(tmp_path):
    write_token(tmp_path)
    (tmp_path / "token").chmod(0o644)
    (tmp_path / "controller.json").write_text('{"pid": 1, "port": 1}')
    with pytest.raises(BackendError, match="readable by others"):
        Client(tmp_path)


def test_client_says_no_controller_runs_when_nothing_listens(tmp_path):
    write_token(tmp_path)
    (tmp_path / "controller.json").write_text(json.dumps({"pid": 1, "port": free_port()}))
    with Client(tmp_path) as client, pytest.raises(ControllerNotRunningError):
        client.call("GET", "/healthz")


def test_client_says_no_controller_runs_without_controller_json(tmp_path):
    with pytest.raises(ControllerNotRunningError, match="no mlkube controller is running"):
        Client(tmp_path)


# the server, in this process ---------------------------------------------------------------
def _doc() -> ModelDeployment:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {
            "model": {"uri": "/models/iris.onnx", "format": "onnx"},
            "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}},
        },
    }
    (parsed,) = parse_documents(yaml.safe_dump(document))
    assert isinstance(parsed, ModelDeployment)
    return parsed


def _deployment(ctrl: Controller) -> Deployment:
    """A deployment with two replicas and no processes: what status and history read."""
    doc = _doc()
    dep = Deployment("ml/iris", doc, Router("ml/iris", hold_s=1.0), RolloutState(stable=1), 2)
    dep.port = 18080
    for name, phase in (("iris-1-a", Phase.READY), ("iris-1-b", Phase.BACKOFF)):
        dep.replicas[name] = Replica(name, 1, 0, 0.0, phase=phase, last_reason="OOMKilled")
    dep.weights = {1: 100.0}
    dep.last_decision = {"desiredReplicas": 2, "reason": "steady", "metrics": {"cpu": 0.5}}
    handlers.add_revision(ctrl, dep, 1, revision_of(doc), "/specs")
    ctrl.deployments[dep.key] = dep
    ctrl.event(dep, "Normal", "Created", "revision 1, 2 replicas")
    ctrl.event(dep, "Warning", "BackOff", "iris-1-b: OOMKilled")
    return dep


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(tmp_path, ControllerSettings())
    yield controller
    controller.store.close()


@pytest.fixture
async def api(ctrl: Controller) -> AsyncIterator[Client]:
    async with served(ctrl, metrics=lambda: METRICS) as client:
        yield client


async def call(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(client.call, method, path, body)


async def refusal(client: Client, method: str, path: str, body: Any = None) -> str:
    """The controller's message for a refused call, checking it still answers afterwards."""
    with pytest.raises(BackendError) as refused:
        await call(client, method, path, body)
    assert await call(client, "GET", "/healthz") == {"ok": True}, "it kept answering"
    return str(refused.value)


def _exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes or 5 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and _complete(answer):
                break
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


async def raw(client: Client, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """A raw request's status, headers and body; then checks the controller still answers."""
    answer = await asyncio.to_thread(_exchange, client.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    assert await call(client, "GET", "/healthz") == {"ok": True}, "it kept answering"
    return int(status_line.split()[1]), headers, body


def request(method: str, path: str, token: str | None, *extra: str, body: bytes = b"") -> bytes:
    headers = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    if token is not None:
        headers.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


# token ---------------------------------------------------------------------------------------
@pytest.mark.integration
async def test_a_missing_or_wrong_token_is_refused_with_401(api):
    status, _, body = await raw(api, request("GET", "/status", None))
    assert (status, json.loads(body)) == (401, {"error": "missing or wrong token"})
    status, _, _ = await raw(api, request("GET", "/status", "Bearer"))
    assert status == 401
    status, _, _ = await raw(api, request("POST", "/down", api.token[:-1], "Content-Length: 0"))
    assert status == 401, "a prefix of the token is no token"
    api.token = "wrong"  # noqa: S105 - a deliberately wrong token
    with pytest.raises(BackendError, match="missing or wrong token"):
        await call(api, "POST", "/down", {})
    assert not api.state.joinpath("nothing").exists()


@pytest.mark.integration
async def test_the_right_token_opens_every_route(api, ctrl):
    _deployment(ctrl)
    assert await call(api, "GET", "/healthz") == {"ok": True}
    assert (await call(api, "GET", "/status"))["deployments"][0]["name"] == "iris"


@pytest.mark.integration
async def test_metrics_need_no_token_and_are_prometheus_text(api):
    status, headers, body = await raw(api, request("GET", "/metrics", None))
    assert (status, body) == (200, METRICS)
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    status, _, _ = await raw(api, request("POST", "/metrics", None, "Content-Length: 0"))
    assert status == 401, "only GET /metrics is open"


# body limits ---------------------------------------------------------------------------------
@pytest.mark.integration
async def test_a_body_announced_over_4_mib_is_refused_before_it_is_sent(api):
    announced = request(
        "POST", "/apply", api.token, f"Content-Length: {MAX_BODY_BYTES + 1}", body=b'{"pa'
    )
    status, headers, body = await raw(api, announced)
    assert status == 413
    assert headers["connection"] == "close", "the rest of the body is never read"
    assert str(MAX_BODY_BYTES) in json.loads(body)["error"]


def _upload(port: int, token: str, size: int) -> tuple[int, bytes]:
    """urllib sends the whole body before it reads the answer, as many clients do."""
    import urllib.error
    import urllib.request

    sent = urllib.request.Request(
        f"http://127.0.0.1:{port}/apply",
        data=b"x" * size,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(sent, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


@pytest.mark.integration
async def test_a_30_mb_upload_reads_its_413_instead_of_a_reset(api):
    status, body = await asyncio.to_thread(_upload, api.port, api.token, 30 * 2**20)
    assert status == 413
    assert str(MAX_BODY_BYTES) in json.loads(body)["error"]
    assert await call(api, "GET", "/healthz") == {"ok": True}


@pytest.mark.integration
async def test_a_chunked_body_over_4_mib_is_refused_while_it_streams(api):
    # Exactly one byte over the limit, and no final chunk: the server must stop on its count,
    # not wait for the end of a body that could go on forever.
    piece = 2**16
    count, rest = divmod(MAX_BODY_BYTES + 1, piece)
    chunks = [b"%x\r\n" % piece + b" " * piece + b"\r\n"] * count
    chunks.append(b"%x\r\n" % rest + b" " * rest + b"\r\n")
    head = request("POST", "/apply", api.token, "Transfer-Encoding: chunked")
    status, _, body = await raw(api, head + b"".join(chunks))
    assert status == 413
    assert "over" in json.loads(body)["error"]


@pytest.mark.integration
async def test_a_chunked_body_under_the_limit_is_read_whole(api, ctrl):
    _deployment(ctrl)
    payload = json.dumps({"name": "iris"}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (1, payload[i : i + 1]) for i in range(len(payload)))
    head = request("GET", "/rollout/status?name=iris", api.token, "Transfer-Encoding: chunked")
    status, _, _ = await raw(api, head + chunked + b"0\r\n\r\n")
    assert status == 200
    body = request("POST", "/rollout/undo", api.token, "Transfer-Encoding: chunked", body=chunked)
    status, _, answer = await raw(api, body + b"0\r\n\r\n")
    assert (status, json.loads(answer)["error"]) == (
        409,
        "deployment 'ml/iris' has no earlier revision to go back to",
    )


# bad requests --------------------------------------------------------------------------------
@pytest.mark.integration
async def test_invalid_json_is_a_400(api):
    raw_body = b'{"name": "iris", "replicas": '
    status, _, body = await raw(
        api,
        request("POST", "/scale", api.token, f"Content-Length: {len(raw_body)}", body=raw_body),
    )
    assert status == 400
    assert json.loads(body)["error"].startswith("invalid request body: body: Invalid JSON")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/scale", {"name": "iris", "replicas": "x"}, "replicas: Input should be a valid integer"),
        ("/scale", {"name": "iris", "replicas": -1}, "replicas: Input should be greater than"),
        ("/scale", {"name": "iris", "replicas": 1.5}, "replicas: Input should be a valid integer"),
        ("/scale", {"replicas": 1}, "name: Field required"),
        ("/scale", {"name": "iris", "replica": 1}, "replica: Extra inputs are not permitted"),
        ("/apply", {"paths": "iris.yaml"}, "paths: Input should be a valid array"),
        ("/rollout/undo", {"name": "iris", "revision": "two"}, "revision: Input should be"),
        ("/down", {"name": 3}, "name: Input should be a valid string"),
        ("/prometheus", {"binary": ["prometheus"]}, "binary: Input should be a valid string"),
        ("/down", ["iris"], "body: Input should be an object"),
        ("/scale", {"name": "iris", "replicas": True}, "replicas: Input should be a valid integer"),
        ("/scale", {"name": "iris", "replicas": "3"}, "replicas: Input should be a valid integer"),
        ("/scale", {"name": "iris", "replicas": 10**30}, "replicas: Input should be less than"),
        ("/rollout/undo", {"name": "iris", "revision": 10**30}, "revision: Input should be less"),
        ("/down", {"name": True}, "name: Input should be a valid string"),
    ],
)
async def test_a_body_that_does_not_fit_its_model_is_a_400_naming_the_field(api, path, body, field):
    message = await refusal(api, "POST", path, body)
    assert message.startswith("invalid request body: ")
    assert field in message


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/events?name=iris&limit=abc", "limit: Input should be a valid integer"),
        ("/events?limit=5", "name: Field required"),
        ("/usage?name=iris&since=abc", "since: Input should be a valid number"),
        ("/usage?name=iris&since=nan", "since: Input should be a finite number"),
        ("/usage", "name: Field required"),
        ("/rollout/history", "name: Field required"),
        ("/status?nmae=iris", "nmae: Extra inputs are not permitted"),
        ("/events?name=iris&limit=99999999999999999999", "limit: Input should be less than"),
        ("/status?name=iris&name=other", "name given more than once"),
    ],
)
async def test_a_query_that_does_not_parse_is_a_400_naming_the_field(api, ctrl, path, field):
    _deployment(ctrl)
    message = await refusal(api, "GET", path)
    assert message.startswith("invalid query: ")
    assert field in message


@pytest.mark.integration
async def test_the_400_names_the_value_it_could_not_use(api, ctrl):
    _deployment(ctrl)
    message = await refusal(api, "GET", "/usage?name=iris&since=yesterday")
    assert "since" in message and "'yesterday'" in message


@pytest.mark.integration
async def test_unknown_routes_are_404_and_wrong_methods_405(api):
    assert await refusal(api, "GET", "/nope") == "no such API route: GET /nope"
    assert await refusal(api, "GET", "/status/") == "no such API route: GET /status/"
    assert await refusal(api, "DELETE", "/status") == (
        "method not allowed: DELETE /status (allowed: GET, HEAD)"
    )
    status, headers, body = await raw(api, request("GET", "/scale", api.token))
    assert status == 405 and headers["allow"] == "POST"
    assert json.loads(body) == {"error": "method not allowed: GET /scale (allowed: POST)"}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello: [1, 2\n", "in the spec"),
        ("just a string\n", "expected a mapping with apiVersion, kind, metadata and spec"),
        (None, "no such file or folder"),
    ],
    ids=["not-yaml", "not-a-spec", "missing"],
)
async def test_a_file_that_is_no_spec_is_a_400_naming_it(api, tmp_path, content, message):
    path = tmp_path / "mine.yaml"
    if content is not None:
        path.write_text(content)
    refused = await refusal(api, "POST", "/apply", {"paths": [str(path)]})
    assert str(path) in refused
    assert message in refused
    data = json.dumps({"paths": [str(path)]}).encode()
    status, _, _ = await raw(
        api, request("POST", "/apply", api.token, f"Content-Length: {len(data)}", body=data)
    )
    assert status == 400


@pytest.mark.integration
async def test_apply_refuses_paths_it_cannot_use_with_a_400(api, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * 2**21)
    cases = {
        "relative.yaml": "paths must be absolute",
        "/" + "a" * 5000: "cannot read: File name too long",
        "/dev/zero": "not a regular file or folder",
        str(big): "a spec file is at most 1048576",
    }
    for path, message in cases.items():
        refused = await refusal(api, "POST", "/apply", {"paths": [path]})
        assert message in refused, refused


# handler failures ----------------------------------------------------------------------------
@pytest.mark.integration
async def test_a_backend_error_is_a_409_with_its_message(api, ctrl):
    _deployment(ctrl)
    message = await refusal(api, "POST", "/scale", {"name": "nope", "replicas": 1})
    assert message == "no deployment named 'nope' is running (running: ml/iris)"
    message = await refusal(api, "GET", "/events?name=nope")
    assert message.startswith("no deployment named 'nope'")


@pytest.mark.integration
async def test_an_unexpected_exception_is_a_logged_500_with_a_generic_message(
    api, ctrl, monkeypatch, caplog
):
    def broken(ctrl: Controller, name: str | None) -> dict[str, Any]:
        raise RuntimeError("the secret detail of a bug")

    monkeypatch.setattr(handlers, "status", broken)
    with caplog.at_level(logging.ERROR):
        message = await refusal(api, "GET", "/status")
    assert message == INTERNAL_ERROR
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "GET /status" in record.getMessage()
    assert isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.integration
async def test_an_answer_that_breaks_its_response_model_is_a_500_not_a_400(
    api, ctrl, monkeypatch, caplog
):
    monkeypatch.setattr(handlers, "rollout_status", lambda dep: {"stable": "one"})
    _deployment(ctrl)
    with caplog.at_level(logging.ERROR):
        message = await refusal(api, "GET", "/rollout/status?name=iris")
    assert message == INTERNAL_ERROR
    assert any(r.exc_info for r in caplog.records)


@pytest.mark.integration
async def test_broken_metrics_are_a_500_in_the_error_shape(ctrl, caplog):
    def broken() -> bytes:
        raise RuntimeError("no metrics")

    async with served(ctrl, metrics=broken) as client:
        with caplog.at_level(logging.ERROR):
            status, _, body = await raw(client, request("GET", "/metrics", None))
    assert (status, json.loads(body)) == (500, {"error": INTERNAL_ERROR})


# malformed HTTP --------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize(
    "data",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /status HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /status HTTP/1.1\r\nHost: x\r\nX-Bad header: 1\r\n\r\n",
        b"GET /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["garbage", "bad-content-length", "bad-header-name", "bad-chunk-size"],
)
async def test_malformed_http_is_refused_and_the_controller_keeps_answering(api, data):
    answer = await asyncio.to_thread(_exchange, api.port, data)
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"400", b"431")
    assert await call(api, "GET", "/healthz") == {"ok": True}


def _endless_header(port: int) -> bytes:
    """A header line that never ends (64 MiB offered): what the server answers, if anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * 2**20)
            return sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""


@pytest.mark.integration
async def test_an_endless_header_gets_a_431_the_client_can_read(api):
    # The server stops buffering at 16 KiB, answers, and keeps reading (discarding) what the
    # client still sends for a while (lingering close): the client reads the 431, no reset.
    answer = await asyncio.to_thread(_endless_header, api.port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body) == {"error": "the request head is over 16384 bytes"}
    assert await call(api, "GET", "/healthz") == {"ok": True}


@pytest.mark.integration
async def test_a_whole_head_over_the_limit_is_a_431(api):
    big = "X-Big: " + "a" * 20_000
    status, headers, body = await raw(api, request("GET", "/status", api.token, big))
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "the request head is over 16384 bytes"}


def _stalled(port: int, data: bytes) -> bytes:
    """Send ``data`` (an unfinished request, or nothing), then read what the server says."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if data:
            sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.integration
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET /status HTTP/1.1\r\nHost: x\r\n",
        b"POST /apply HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    ],
    ids=["silent-connection", "unfinished-head", "unfinished-body"],
)
async def test_a_request_not_sent_in_time_gets_a_408_and_the_connection_closes(ctrl, data):
    async with served(ctrl, read_timeout_s=0.3) as client:
        if b"POST" in data:
            data = data.replace(
                b"Host: x", b"Host: x\r\nAuthorization: Bearer " + client.token.encode()
            )
        answer = await asyncio.to_thread(_stalled, client.port, data)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(body) == {"error": "the request was not received within 0.3 s"}
        assert await call(client, "GET", "/healthz") == {"ok": True}


@pytest.mark.integration
async def test_a_stalled_request_does_not_block_the_others(api):
    def stall() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=5)
        sock.sendall(b"POST /apply HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        return sock

    half = await asyncio.to_thread(stall)
    try:
        assert await asyncio.wait_for(call(api, "GET", "/healthz"), 10) == {"ok": True}
    finally:
        half.close()


# the JSON the routes answer --------------------------------------------------------------------
def _as_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


@pytest.mark.integration
async def test_the_routes_answer_what_the_handlers_return_key_for_key(api, ctrl):
    dep = _deployment(ctrl)
    expected = {
        "/status": handlers.status(ctrl, None),
        "/status?name=iris": handlers.status(ctrl, "iris"),
        "/rollout/status?name=iris": handlers.rollout_status(dep),
        "/rollout/history?name=ml/iris": handlers.history(ctrl, dep),
        "/events?name=iris&limit=1": handlers.events(ctrl, dep, 1),
    }
    for path, data in expected.items():
        assert await call(api, "GET", path) == _as_json(data), path
    status = await call(api, "GET", "/status")
    assert set(status["deployments"][0]) >= {"requestsPerSecond", "p50Ms", "lbFailed"}
    assert status["deployments"][0]["replicas"][1]["lastReason"] == "OOMKilled"
    (event,) = await call(api, "GET", "/events?name=iris&limit=1")
    assert event["reason"] == "BackOff"
    usage = await call(api, "GET", "/usage?name=iris")
    assert (usage["name"], usage["samples"], usage["ooms"]) == ("ml/iris", [], [])
    assert set(usage) == {
        "name", "revision", "spec", "sourceDir", "scrapePeriodSeconds", "deployment",
        "samples", "ooms",
    }  # fmt: skip


@pytest.mark.integration
async def test_down_answers_before_the_controller_stops(api, ctrl):
    dep = _deployment(ctrl)
    dep.replicas.clear()
    answer = await call(api, "POST", "/down", {})
    assert answer == {
        "stopped": ["ml/iris"],
        "controllerExiting": True,
        "prometheusStopped": False,
        "alertmanagerStopped": False,
    }
    assert ctrl.stopping.is_set()


# the server in the controller's loop --------------------------------------------------------
@pytest.mark.integration
async def test_the_server_leaves_the_controllers_signal_handlers_alone(ctrl):
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("never sent")

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        async with served(ctrl) as client:
            assert await call(client, "GET", "/healthz") == {"ok": True}
            assert signal.getsignal(signal.SIGTERM) is mine
            assert signal.getsignal(signal.SIGINT) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.integration
async def test_stopping_the_server_frees_the_port(ctrl):
    async with served(ctrl) as client:
        port = client.port
        assert await call(client, "GET", "/healthz") == {"ok": True}
    with Client(ctrl.state) as after, pytest.raises(ControllerNotRunningError):
        await call(after, "GET", "/healthz")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing holds it any more


@pytest.mark.integration
async def test_an_answer_in_progress_completes_when_the_server_stops(ctrl, monkeypatch):
    started = asyncio.Event()

    async def slow_down(ctrl: Controller, name: str | None) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(0.3)
        return {"stopped": [], "controllerExiting": True, "prometheusStopped": False}

    monkeypatch.setattr(handlers, "down", slow_down)
    token = write_token(ctrl.state)
    server = await serve_api(build_app(ctrl, token, metrics=lambda: METRICS))
    data = b"{}"
    sent = request("POST", "/down", token, f"Content-Length: {len(data)}", body=data)
    answer = asyncio.create_task(asyncio.to_thread(_exchange, server.port, sent))
    await started.wait()
    await server.stop()  # while /down is still being answered
    head, _, body = (await answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["controllerExiting"] is True
