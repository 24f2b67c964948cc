"""The in-cluster rollout controller (``kubernetes.rolloutController: true``): what it renders,
and the controller itself driving a Canary to promotion against the API-server DOUBLE while
the double authorizes it by exactly the rendered Role (``FakeApiServer.restrict_to``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from k8s_apiserver import TOKEN, FakeApiServer
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.render import render
from mlkube.backends.kubernetes.render.manifest import ANNOTATION_CONFIG_HASH
from mlkube.cli import cli
from mlkube.errors import SpecError
from mlkube.spec import load_documents, parse_documents

HERE = Path(__file__).resolve().parent
CANARY = HERE / "specs" / "canary-gateway.yaml"


def _documents(**kubernetes: Any) -> list[dict[str, Any]]:
    documents = list(yaml.safe_load_all(CANARY.read_text(encoding="utf-8")))
    spec = documents[0]["spec"]
    spec["kubernetes"].update(kubernetes)
    # No pauses and no analysis: every tick whose canary is ready moves a step.
    spec["rollout"].update(steps=[{"weight": 10}, {"weight": 50}], analysis=None)
    return documents


def _write(tmp_path: Path, documents: list[dict[str, Any]]) -> str:
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    return str(path)


def _controller(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["kind"]: o
        for o in objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "rollout-controller"
    }


def test_the_controller_renders_valid_least_privilege_objects(tmp_path: Path) -> None:
    path = _write(tmp_path, _documents(rolloutController=True))
    objects = [dict(o) for o in render(load_documents(path)).objects]
    mine = _controller(objects)
    assert sorted(mine) == ["Deployment", "Role", "RoleBinding", "ServiceAccount"]
    for obj in mine.values():
        for version in VERSIONS:
            assert validate(obj, version) == []
    assert mine["Role"]["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["iris", "iris-canary"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["autoscaling"],
            "resources": ["horizontalpodautoscalers"],
            "resourceNames": ["iris-hpa", "iris-canary-hpa"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "resourceNames": ["iris"],
            "verbs": ["get", "patch"],
        },
    ]
    pod = mine["Deployment"]["spec"]["template"]
    assert "app" not in pod["metadata"]["labels"]  # the Services never select it
    assert pod["spec"]["serviceAccountName"] == "iris-rollout"
    assert pod["spec"]["containers"][0]["args"][:3] == ["rollout", "controller", "iris"]
    without = [dict(o) for o in render(load_documents(_write(tmp_path, _documents()))).objects]
    assert _controller(without) == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rollout": {"strategy": "RollingUpdate"}}, "runs a Canary's steps"),
        ({"kubernetes": {"canaryWeight": 50}}, "remove kubernetes.canaryWeight"),
    ],
)
def test_the_controller_is_refused_where_it_cannot_drive(
    change: dict[str, Any], message: str
) -> None:
    (document, *_) = _documents(rolloutController=True)
    spec = document["spec"]
    if "rollout" in change:
        spec["rollout"] = change["rollout"]
    spec["kubernetes"].update(change.get("kubernetes", {}))
    with pytest.raises(SpecError, match=message):
        parse_documents(yaml.safe_dump(document))


@pytest.fixture
def api(api: FakeApiServer) -> FakeApiServer:
    """The double (conftest) with namespace ml."""
    api.add_namespace("ml")
    return api


@pytest.mark.integration
def test_the_controller_promotes_a_canary_with_only_its_role(
    api: FakeApiServer, tmp_path: Path
) -> None:
    path = _write(tmp_path, _documents(rolloutController=True))
    KubernetesBackend(namespace="ml").apply((path,))
    role = api.get("roles", "ml", "iris-rollout")
    assert role is not None
    api.restrict_to(role["rules"])  # from now on the caller is the controller's account

    result = CliRunner().invoke(
        cli, ["rollout", "controller", "iris", "-n", "ml", "--ticks", "8", "--interval", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "forbidden" not in result.output.lower()
    assert "Complete" in result.output.splitlines()[-1]
    stable, canary = (
        api.get("deployments", "ml", "iris"),
        api.get("deployments", "ml", "iris-canary"),
    )
    assert stable is not None and canary is not None
    annotations = stable["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations[ANNOTATION_CONFIG_HASH]
        == (canary["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH])
    )
    assert canary["spec"]["replicas"] == 0


@pytest.mark.integration
def test_the_role_refuses_what_the_controller_does_not_need(
    api: FakeApiServer, tmp_path: Path
) -> None:
    path = _write(tmp_path, _documents(rolloutController=True))
    KubernetesBackend(namespace="ml").apply((path,))
    role = api.get("roles", "ml", "iris-rollout")
    assert role is not None
    api.restrict_to(role["rules"])
    auth = {"authorization": f"Bearer {TOKEN}"}
    for path in (
        "/apis/apps/v1/namespaces/ml/deployments",  # no list
        "/api/v1/namespaces/ml/configmaps/iris-config",  # nothing beyond the named objects
        "/apis/apps/v1/namespaces/ml/deployments/iris-rollout",  # not even its own Deployment
    ):
        status, _, _ = api.handle("GET", path, auth, b"")
        assert status == 403, path
    status, _, _ = api.handle("GET", "/apis/apps/v1/namespaces/ml/deployments/iris", auth, b"")
    assert status == 200


@pytest.mark.integration
def test_status_leaves_the_controller_out_of_the_tracks(api: FakeApiServer, tmp_path: Path) -> None:
    path = _write(tmp_path, _documents(rolloutController=True))
    backend = KubernetesBackend(namespace="ml")
    backend.apply((path,))
    report = backend.status("iris")
    text = yaml.safe_dump(report.document)
    assert "iris-rollout" not in text
