import pytest

from mlkube.serving.routes import Action, resolve


@pytest.mark.parametrize(
    ("method", "path", "action", "model", "version"),
    [
        pytest.param("GET", "/v1/models/iris", Action.V1_STATUS, "iris", None, id="v1-status"),
        pytest.param(
            "GET",
            "/v1/models/iris/versions/1",
            Action.V1_STATUS,
            "iris",
            "1",
            id="v1-status-version",
        ),
        pytest.param(
            "GET",
            "/v1/models/default/metadata",
            Action.V1_METADATA,
            "default",
            None,
            id="v1-metadata",
        ),
        pytest.param(
            "GET",
            "/v1/models/iris/versions/2/metadata",
            Action.V1_METADATA,
            "iris",
            "2",
            id="v1-metadata-version",
        ),
        pytest.param(
            "POST", "/v1/models/iris:predict", Action.V1_PREDICT, "iris", None, id="v1-predict"
        ),
        pytest.param(
            "POST",
            "/v1/models/iris/versions/1:predict",
            Action.V1_PREDICT,
            "iris",
            "1",
            id="v1-predict-version",
        ),
        pytest.param("GET", "/v2", Action.V2_SERVER, None, None, id="v2-server"),
        pytest.param("GET", "/v2/health/live", Action.V2_LIVE, None, None, id="v2-live"),
        pytest.param("GET", "/v2/health/ready", Action.V2_READY, None, None, id="v2-ready"),
        pytest.param("GET", "/v2/models/iris", Action.V2_MODEL, "iris", None, id="v2-model"),
        pytest.param(
            "GET",
            "/v2/models/iris/versions/1/ready",
            Action.V2_MODEL_READY,
            "iris",
            "1",
            id="v2-model-ready-version",
        ),
        pytest.param("POST", "/v2/models/iris/infer", Action.V2_INFER, "iris", None, id="v2-infer"),
        pytest.param(
            "POST",
            "/v2/models/iris/versions/7/infer",
            Action.V2_INFER,
            "iris",
            "7",
            id="v2-infer-version",
        ),
        pytest.param("GET", "/metrics", Action.METRICS, None, None, id="metrics"),
        pytest.param(
            "POST",
            "/v1/models/iris:classify",
            Action.V1_UNSUPPORTED,
            "iris",
            None,
            id="v1-classify",
        ),
    ],
)
def test_known_paths(method, path, action, model, version):
    route = resolve(method, path)
    assert (route.action, route.model, route.version) == (action, model, version)
    assert route.method_allowed


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v1/models/",
        "/v1/models/a/b",
        "/v1/models/a/versions/",
        "/v2/models/",
        "/v2/models/a/explain",
        "/v3/models/a",
        "/metricsx",
    ],
)
def test_unknown_paths(path):
    assert resolve("GET", path).action is Action.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/models/a:predict", "POST"),
        ("PUT", "/v2/models/a/infer", "POST"),
        ("POST", "/v2/health/ready", "GET"),
        ("DELETE", "/metrics", "GET"),
    ],
)
def test_wrong_method_is_flagged(method, path, allowed):
    route = resolve(method, path)
    assert not route.method_allowed
    assert route.allowed == allowed


def test_head_is_allowed_where_get_is():
    assert resolve("HEAD", "/v2/health/live").method_allowed


@pytest.mark.parametrize(
    ("method", "path", "action", "model", "allowed"),
    [
        ("POST", "/v2/repository/index", Action.V2_REPOSITORY_INDEX, None, True),
        ("GET", "/v2/repository/index", Action.V2_REPOSITORY_INDEX, None, False),
        ("POST", "/v2/repository/models/iris/load", Action.V2_REPOSITORY_LOAD, "iris", True),
        ("POST", "/v2/repository/models/a%20b/unload", Action.V2_REPOSITORY_UNLOAD, "a b", True),
        ("POST", "/v2/repository/models/iris/reload", Action.NOT_FOUND, None, True),
        ("POST", "/v2/repository/models//load", Action.NOT_FOUND, None, True),
        ("POST", "/v2/repository/models/iris/load/x", Action.NOT_FOUND, None, True),
    ],
)
def test_repository_routes(method, path, action, model, allowed):
    route = resolve(method, path)
    assert (route.action, route.model, route.method_allowed) == (action, model, allowed)
