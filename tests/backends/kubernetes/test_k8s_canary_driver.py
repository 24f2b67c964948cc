"""A Canary's steps and analysis on a cluster: ``rollout status|promote|abort --target
kubernetes`` against the API-server DOUBLE (``k8s_apiserver``), with the cluster's Prometheus
played by a small loopback server that answers the HTTP API's instant queries.

The Prometheus double models only ``GET /api/v1/query`` returning a vector
(https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries); it answers each
of the driver's three queries (requests, 5xx requests, p99) from numbers the test sets. It does
not evaluate PromQL: ``test_canary_queries_select_the_canary_series`` checks the query text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from k8s_apiserver import FakeApiServer

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.errors import ObjectNotFoundError
from mlkube.backends.kubernetes.prometheus_query import canary_queries
from mlkube.backends.kubernetes.render.manifest import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_ROLLOUT_STATE,
    LABEL_TRACK,
)
from mlkube.clock import ManualClock

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
CANARY = HERE / "specs" / "canary-gateway.yaml"

POLL_S = 0.02
"""How often the server thread checks for shutdown (socketserver's default is 0.5 s, which
every ``shutdown()`` -- every test's teardown -- waited out)."""


class FakePrometheus:
    """The instant-query endpoint of a Prometheus, answering from ``requests``, ``errors``
    and ``p99_s`` (None: an empty vector, as for a series with no samples)."""

    def __init__(self) -> None:
        self.requests: float | None = 0.0
        self.errors: float | None = 0.0
        self.p99_s: float | None = None
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)["query"][0]
                outer.queries.append(query)
                body = json.dumps(outer.answer(query)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": POLL_S},  # shutdown() waits one poll
            daemon=True,
        ).start()

    def answer(self, query: str) -> dict[str, Any]:
        if query.startswith("histogram_quantile"):
            value = self.p99_s
        elif '=~"5.."' in query:
            value = self.errors
        else:
            value = self.requests
        result = [] if value is None else [{"metric": {}, "value": [1.0, str(value)]}]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(api: FakeApiServer) -> FakeApiServer:
    """The double (conftest) with namespace ml."""
    api.add_namespace("ml")
    return api


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    server.stop()


def _spec(tmp_path: Path, *, model: str = "s3://models/iris/v2/iris.onnx", **rollout: Any) -> str:
    documents = list(yaml.safe_load_all(CANARY.read_text(encoding="utf-8")))
    spec = documents[0]["spec"]
    spec["model"]["uri"] = model
    spec["rollout"].update(rollout)
    path = tmp_path / f"canary-{abs(hash((model, json.dumps(rollout, sort_keys=True))))}.yaml"
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    return str(path)


def _weights(api: FakeApiServer) -> dict[str, int]:
    route = api.get("httproutes", "ml", "iris")
    assert route is not None
    refs = route["spec"]["rules"][-1]["backendRefs"]
    return {ref["name"]: ref["weight"] for ref in refs}


def _canary(api: FakeApiServer) -> dict[str, Any]:
    canary = api.get("deployments", "ml", "iris-canary")
    assert canary is not None
    return canary


def _hash(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH])


def _backend(clock: ManualClock, prometheus: FakePrometheus | None) -> KubernetesBackend:
    url = prometheus.url if prometheus is not None else None
    return KubernetesBackend(namespace="ml", clock=clock, prometheus_url=url)


def test_steps_advance_with_passing_analysis_then_the_canary_is_promoted(
    api: FakeApiServer, prometheus: FakePrometheus, tmp_path: Path
) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, prometheus)
    backend.apply((_spec(tmp_path),))
    canary_hash = _hash(_canary(api))
    assert _weights(api) == {"iris-stable": 90, "iris-canary": 10}

    status = backend.rollout_status("iris")  # starts the rollout at step 0 (10%, pause 60s)
    assert (status.phase, status.step) == ("Progressing", 0)
    assert dict(status.weights or ()) == {"stable": 90.0, "canary": 10.0}
    status = backend.rollout_status("iris")  # the canary's pod is ready: the pause starts
    prometheus.requests, prometheus.errors, prometheus.p99_s = 500.0, 1.0, 0.02

    clock.advance(11)  # one analysis interval (10s) passed, the 60s pause not yet
    status = backend.rollout_status("iris")
    assert status.step == 0
    clock.advance(60)
    status = backend.rollout_status("iris")  # pause over and analysis passed: step 1, 50%
    assert status.step == 1
    assert _weights(api) == {"iris-stable": 50, "iris-canary": 50}
    assert _canary(api)["spec"]["replicas"] == 1  # ceil(2 * 50%)
    assert len(prometheus.queries) == 6  # two intervals judged: requests, 5xx, p99 each

    for _ in range(8):  # step 1 has no pause: one passed interval each time, then promotion
        clock.advance(11)
        status = backend.rollout_status("iris")
        if status.phase == "Complete":
            break
    assert status.phase == "Complete", status
    stable = api.get("deployments", "ml", "iris")
    assert stable is not None
    assert _hash(stable) == canary_hash  # the stable Deployment now runs the canary's revision
    assert stable["spec"]["template"]["metadata"]["labels"][LABEL_TRACK] == "stable"
    assert _canary(api)["spec"]["replicas"] == 0
    assert _weights(api) == {"iris-stable": 100}


def test_a_failing_analysis_rolls_the_canary_back(
    api: FakeApiServer, prometheus: FakePrometheus, tmp_path: Path
) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, prometheus)
    backend.apply((_spec(tmp_path),))
    backend.rollout_status("iris")
    backend.rollout_status("iris")
    prometheus.requests, prometheus.errors = 400.0, 40.0  # 10% 5xx, maxErrorRate 1%
    clock.advance(11)
    backend.rollout_status("iris")  # the interval is judged: failure recorded
    status = backend.rollout_status("iris")
    assert status.phase == "RolledBack"
    assert "error rate 0.100" in status.reason
    assert _weights(api) == {"iris-stable": 100}
    assert _canary(api)["spec"]["replicas"] == 0
    # Nothing moves any more: the record stays rolled back for this revision.
    clock.advance(120)
    assert backend.rollout_status("iris").phase == "RolledBack"
    assert _canary(api)["spec"]["replicas"] == 0


def test_without_prometheus_analysis_waits_and_says_why(api: FakeApiServer, tmp_path: Path) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, None)
    backend.apply((_spec(tmp_path),))
    backend.rollout_status("iris")
    backend.rollout_status("iris")
    clock.advance(600)
    status = backend.rollout_status("iris")
    assert (status.phase, status.step) == ("Progressing", 0)
    assert "--prometheus" in status.reason


def test_promote_skips_a_step_and_abort_sends_all_traffic_back(
    api: FakeApiServer, tmp_path: Path
) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, None)
    backend.apply((_spec(tmp_path),))
    backend.rollout_status("iris")
    status = backend.rollout_promote("iris")
    assert status.step == 1
    assert _weights(api) == {"iris-stable": 50, "iris-canary": 50}
    status = backend.rollout_abort("iris")
    assert status.phase == "RolledBack"
    assert _weights(api) == {"iris-stable": 100}
    assert _canary(api)["spec"]["replicas"] == 0
    with pytest.raises(ObjectNotFoundError, match="no canary in progress"):
        backend.rollout_promote("iris")


def test_promote_full_promotes_through_the_two_phases(api: FakeApiServer, tmp_path: Path) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, None)
    backend.apply((_spec(tmp_path),))
    backend.rollout_status("iris")
    backend.rollout_promote("iris", full=True)  # the canary goes to full size
    phases = [backend.rollout_status("iris").phase for _ in range(6)]
    assert phases[-1] == "Complete", phases
    stable = api.get("deployments", "ml", "iris")
    assert stable is not None and _hash(stable) == _hash(_canary(api))


def test_reapplying_the_same_spec_mid_rollout_keeps_the_step(
    api: FakeApiServer, tmp_path: Path
) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, None)
    path = _spec(tmp_path)
    backend.apply((path,))
    backend.rollout_status("iris")
    backend.rollout_promote("iris")  # step 1: 50%, the driver owns the canary's count now
    assert _canary(api)["spec"]["replicas"] == 1
    backend.apply((path,))  # no conflict with the driver's fields, the step is kept
    status = backend.rollout_status("iris")
    assert status.step == 1
    assert _weights(api) == {"iris-stable": 50, "iris-canary": 50}
    state = _canary(api)["metadata"]["annotations"][ANNOTATION_ROLLOUT_STATE]
    assert json.loads(state)["state"]["step"] == 1


def test_a_new_model_starts_the_steps_again(api: FakeApiServer, tmp_path: Path) -> None:
    clock = ManualClock(start=10_000.0)
    backend = _backend(clock, None)
    backend.apply((_spec(tmp_path),))
    backend.rollout_status("iris")
    backend.rollout_promote("iris")
    assert backend.rollout_status("iris").step == 1
    backend.apply((_spec(tmp_path, model="s3://models/iris/v3/iris.onnx"),))
    status = backend.rollout_status("iris")
    assert (status.phase, status.step) == ("Progressing", 0)
    assert _weights(api) == {"iris-stable": 90, "iris-canary": 10}


def test_a_deployment_without_a_canary_cannot_be_promoted(api: FakeApiServer) -> None:
    guide = str(HERE.parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml")
    backend = _backend(ManualClock(), None)
    backend.apply((guide,))
    name = yaml.safe_load(Path(guide).read_text(encoding="utf-8"))["metadata"]["name"]
    with pytest.raises(ObjectNotFoundError, match="runs no Canary"):
        backend.rollout_promote(name)


def test_canary_queries_select_the_canary_series() -> None:
    requests, errors, p99 = canary_queries("ml", "iris", 30)
    for query in (requests, errors, p99):
        assert 'namespace="ml"' in query and 'deployment="iris"' in query
        assert 'revision="canary"' in query and "[30s]" in query
    assert 'code=~"5.."' in errors and 'code=~"5.."' not in requests
    assert p99.startswith("histogram_quantile(0.99")
