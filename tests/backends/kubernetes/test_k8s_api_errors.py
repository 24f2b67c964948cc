"""A cluster without optional CRD groups, and API errors (401, 403, 404 in plain text): every
command gets through or stops with one clear line and a non-zero exit, never a traceback.

Against ``k8s_apiserver.FakeApiServer``, which answers an unregistered API group with the
plain-text ``404 page not found`` of a real kube-apiserver (not a JSON Status).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from k8s_apiserver import TOKEN, FakeApiServer

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.doctor import run_doctor
from mlkube.backends.kubernetes.errors import (
    ApiMissingError,
    ForbiddenError,
    UnauthorizedError,
)
from mlkube.backends.kubernetes.render.manifest import kind_info
from mlkube.cli import main
from mlkube.clock import ManualClock

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
GUIDE = str(HERE.parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml")
CANARY = str(HERE / "specs" / "canary-gateway.yaml")
OPTIONAL_GROUPS = ("gateway.networking.k8s.io", "keda.sh", "monitoring.coreos.com")


def _backend(namespace: str | None = None) -> KubernetesBackend:
    return KubernetesBackend(namespace=namespace, clock=ManualClock())


def _mlkube(capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``mlkube`` entry point (as the console script does): exit code, stdout, stderr."""
    try:
        main([*args])
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_double_answers_an_unregistered_group_in_plain_text(api):
    api.served_crd_groups = set()
    cluster = Cluster(Target())
    try:
        status, body = cluster.raw_get(
            "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes"
        )
    finally:
        cluster.close()
    assert (status, body) == (404, None)  # "404 page not found", not JSON


@pytest.mark.parametrize("group", OPTIONAL_GROUPS)
def test_apply_status_scale_delete_work_without_an_optional_crd_group(api, group):
    api.served_crd_groups.discard(group)
    _backend().apply((GUIDE,))  # crashed: HTTPStatusError 404 .../httproutes (prune)
    _backend().apply((GUIDE,))
    backend = _backend("ml")
    assert backend.status("ml-model").document[0]["deployments"][0]["name"] == "ml-model"
    assert backend.status(None).tables[0].rows[0][0] == "ml-model"
    backend.scale("ml-model", 2)
    assert api.get("deployments", "ml", "ml-model")["spec"]["replicas"] == 2
    assert any(c.action == "deleted" for c in backend.delete("ml-model").changes)
    # Discovery first: no request ever named a resource of the missing group.
    assert not [r for r in api.requests if r.path.startswith(f"/apis/{group}/v")]
    assert [r for r in api.requests if r.path == "/apis"]


def test_no_optional_crd_group_at_all_through_the_cli(api, capsys):
    api.served_crd_groups = set()
    assert _mlkube(capsys, "apply", GUIDE, "--target", "kubernetes")[0] == 0
    for args in (
        ("status", "--target", "kubernetes", "-n", "ml"),
        ("scale", "ml-model", "2", "--target", "kubernetes", "-n", "ml"),
        ("delete", "ml-model", "--target", "kubernetes", "-n", "ml"),
    ):
        code, _out, err = _mlkube(capsys, *args)
        assert code == 0, err


def test_a_spec_that_needs_a_missing_crd_group_is_one_line(api, capsys):
    api.add_namespace("ml")
    api.served_crd_groups.discard("gateway.networking.k8s.io")
    code, _out, err = _mlkube(capsys, "apply", CANARY, "--target", "kubernetes")
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "error: the cluster does not serve HTTPRoute (gateway.networking.k8s.io/v1)"
    )


def test_a_plain_text_404_on_a_resource_is_an_api_missing_error(api):
    api.served_crd_groups = set()
    cluster = Cluster(Target())
    try:
        with pytest.raises(ApiMissingError, match=r"HTTPRoute \(gateway.networking.k8s.io/v1\)"):
            cluster.get(kind_info("HTTPRoute"), "iris", "ml")
        with pytest.raises(ApiMissingError, match="ScaledObject"):
            cluster.list_objects(kind_info("ScaledObject"), "ml", {})
    finally:
        cluster.close()


def test_served_kinds_come_from_discovery(api):
    api.served_crd_groups = {"keda.sh"}
    cluster = Cluster(Target())
    try:
        kinds = ("Service", "Deployment", "ScaledObject", "HTTPRoute", "ServiceMonitor")
        served = {i.kind for i in cluster.served(kind_info(k) for k in kinds)}
        served_again = {i.kind for i in cluster.served(kind_info(k) for k in kinds)}
    finally:
        cluster.close()
    assert served == served_again == {"Service", "Deployment", "ScaledObject"}
    assert [r.path for r in api.requests] == [  # each document asked once
        "/api/v1",
        "/apis",
        "/apis/apps/v1",
        "/apis/keda.sh/v1alpha1",
    ]


# --- permissions and credentials ------------------------------------------------------------


def test_status_without_list_permission_names_it_and_fails(api, capsys):
    _backend().apply((GUIDE,))
    api.forbidden.add(("list", "deployments.apps"))
    with pytest.raises(ForbiddenError, match=r"may not 'list' deployments\.apps in namespace 'ml'"):
        _backend("ml").status(None)
    code, out, err = _mlkube(capsys, "status", "--target", "kubernetes", "-n", "ml")
    assert code == 1
    assert out == ""  # no empty table
    assert err.count("\n") == 1
    assert err.startswith("error: forbidden: your credentials may not 'list' deployments.apps")


def test_status_without_list_permission_on_autoscalers_fails_too(api):
    _backend().apply((GUIDE,))
    api.forbidden.add(("list", "horizontalpodautoscalers.autoscaling"))
    # An empty AUTOSCALER column would say "no autoscaler", which is not known.
    with pytest.raises(ForbiddenError, match=r"'list' horizontalpodautoscalers\.autoscaling"):
        _backend("ml").status("ml-model")


def test_delete_without_permission_says_forbidden_and_deletes_nothing(api, capsys):
    _backend().apply((GUIDE,))
    api.forbidden.add(("list", "services"))
    code, _out, err = _mlkube(capsys, "delete", "ml-model", "--target", "kubernetes", "-n", "ml")
    assert code == 1
    assert "no mlkube deployment" not in err
    assert err.startswith("error: forbidden: your credentials may not 'list' services")
    assert api.get("deployments", "ml", "ml-model") is not None  # nothing half-deleted


def test_delete_that_may_not_delete_one_kind_deletes_nothing(api):
    _backend().apply((GUIDE,))
    api.forbidden.add(("delete", "deployments.apps"))
    with pytest.raises(ForbiddenError, match=r"may not 'delete' deployments\.apps"):
        _backend("ml").delete("ml-model")
    # The PodDisruptionBudget, HPA and Service come first in delete order: all still there.
    assert api.get("poddisruptionbudgets", "ml", "ml-model-pdb") is not None
    assert api.get("horizontalpodautoscalers", "ml", "ml-model-hpa") is not None
    assert not [r for r in api.requests if r.method == "DELETE" and "dryRun" not in r.query]


def test_scale_and_events_without_permission_say_forbidden(api):
    _backend().apply((GUIDE,))
    api.forbidden.add(("list", "deployments.apps"))
    with pytest.raises(ForbiddenError, match=r"'list' deployments\.apps"):
        _backend("ml").scale("ml-model", 2)
    with pytest.raises(ForbiddenError, match=r"'list' deployments\.apps"):
        _backend("ml").events("ml-model")


def _bad_token(api: FakeApiServer, tmp_path, monkeypatch) -> None:
    config = api.kubeconfig()
    config["users"][0]["user"]["token"] = TOKEN + "-expired"
    path = tmp_path / "bad-kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(path))


def test_a_rejected_token_is_unauthorized_everywhere(api, tmp_path, monkeypatch, capsys):
    _bad_token(api, tmp_path, monkeypatch)
    with pytest.raises(UnauthorizedError, match="rejected the credentials"):
        _backend("ml").status(None)
    with pytest.raises(UnauthorizedError):
        _backend().apply((GUIDE,))
    code, out, err = _mlkube(capsys, "status", "--target", "kubernetes", "-n", "ml")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "401" in err


def test_doctor_with_a_rejected_token_says_unauthorized_not_not_served(
    api, tmp_path, monkeypatch, capsys
):
    _bad_token(api, tmp_path, monkeypatch)
    cluster = Cluster(Target())
    try:
        checks = run_doctor(cluster, "ml")
    finally:
        cluster.close()
    assert [(c.name, c.verdict) for c in checks] == [("API server", "fail")]
    assert "unauthorized" in checks[0].detail
    code, out, _err = _mlkube(capsys, "doctor", "--namespace", "ml")
    assert code == 1
    assert "not served" not in out
    assert out.startswith("FAIL  API server: unauthorized")
