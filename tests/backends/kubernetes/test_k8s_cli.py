"""``mlkube render`` (yaml / kustomize / helm) and ``mlkube doctor`` through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlkube.backends.kubernetes.errors import ClusterUnreachableError
from mlkube.backends.kubernetes.render.formats import escape_helm
from mlkube.cli import cli, main

HERE = Path(__file__).resolve().parent
GUIDE = str(HERE.parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml")
KEDA = str(HERE / "specs" / "keda-gpu.yaml")


def test_render_prints_the_golden_yaml():
    result = CliRunner().invoke(cli, ["render", GUIDE])
    assert result.exit_code == 0, result.output
    assert result.output == (HERE / "golden" / "guide.yaml").read_text(encoding="utf-8")


def test_render_kustomize_lists_every_file_in_apply_order(tmp_path):
    result = CliRunner().invoke(
        cli, ["render", GUIDE, "-o", str(tmp_path), "--format", "kustomize"]
    )
    assert result.exit_code == 0, result.output
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["resources"][0] == "00-namespace-ml.yaml"
    kinds = [
        yaml.safe_load((tmp_path / f).read_text(encoding="utf-8"))["kind"]
        for f in kustomization["resources"]
    ]
    assert kinds == [
        "Namespace",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]


def test_escape_helm_round_trips():
    text = 'summary: "{{ $labels.deployment }} is {{ $value }}"'
    escaped = escape_helm(text)
    assert re.sub(r'\{\{ "(\{\{|\}\})" \}\}', lambda m: m.group(1), escaped) == text


def test_render_multi_file_format_without_output_dir_is_a_usage_error():
    result = CliRunner().invoke(cli, ["render", GUIDE, "--format", "helm"])
    assert result.exit_code == 2
    assert "give -o DIR" in result.output


@pytest.mark.integration
def test_doctor_cli_exit_code_follows_failures(tmp_path, monkeypatch):
    from k8s_apiserver import FakeApiServer  # the API-server test double

    server = FakeApiServer()
    server.start()
    try:
        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump(server.kubeconfig()), encoding="utf-8")
        monkeypatch.setenv("KUBECONFIG", str(config))
        ok = CliRunner().invoke(cli, ["doctor", "--namespace", "ml"])
        assert ok.exit_code == 0, ok.output
        assert "ok    API server: reachable, Kubernetes v1.33.2" in ok.output
        server.metrics_status = 503
        failed = CliRunner().invoke(cli, ["doctor"])
        assert failed.exit_code == 1
        assert "FAIL  metrics-server" in failed.output
        assert "fix: kubectl -n kube-system logs deploy/metrics-server" in failed.output
    finally:
        server.stop()


def _k8s(*args: str):
    return CliRunner().invoke(cli, [*args, "--target", "kubernetes"])


@pytest.mark.integration
def test_the_shared_commands_reach_a_cluster_with_target_kubernetes(api, capsys):
    api.ready_after_reads = 1  # rolled out at the first look: --wait never sleeps
    applied = _k8s("apply", GUIDE, "--wait")
    assert applied.exit_code == 0, applied.output
    lines = applied.stdout.splitlines()
    assert lines[0] == "Namespace/ml applied"
    assert "Deployment/ml-model in ml applied" in lines
    assert lines[-2:] == ["7 objects applied, 0 pruned", "ml-model: rolled out (1 available)"]

    status = _k8s("status", "-n", "ml")
    assert status.exit_code == 0, status.output
    table = status.stdout.splitlines()
    assert table[0].split() == [
        "NAME", "NAMESPACE", "DEPLOYMENT", "READY", "UP-TO-DATE", "AUTOSCALER", "SERVICE"
    ]  # fmt: skip
    assert table[1].split()[:6] == ["ml-model", "ml", "ml-model", "1/1", "1", "hpa"]
    assert "8501:30050" in status.stdout
    assert max(len(line) for line in table) <= 80

    rollout = _k8s("rollout", "status", "ml-model", "-n", "ml")
    assert rollout.stdout == (
        "revision 1 serves all traffic (Complete) ml-model: rolled out (1 available)\n"
    )
    api.add_event("ml", ("Deployment", "ml-model"), "ScalingReplicaSet", "Scaled up to 1")
    events = _k8s("events", "ml-model", "-n", "ml")
    assert events.stdout == (
        "00:00:00  Normal   ScalingReplicaSet    Deployment/ml-model: Scaled up to 1\n"
    )

    with pytest.raises(SystemExit) as exited:
        main(["rollout", "undo", "ml-model", "--target", "kubernetes", "-n", "ml"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "error: the kubernetes backend cannot undo a rollout: kubectl rollout undo "
        "deployment/ml-model -n ml, or apply the previous spec "
        "(mlkube apply SPEC --target kubernetes)\n"
    )
    everything = _k8s("down")
    assert everything.exit_code == 2
    assert "give the deployment's NAME" in everything.output
    deleted = _k8s("delete", "ml-model", "-n", "ml")
    assert deleted.exit_code == 0, deleted.output
    assert "Deployment/ml-model in ml deleted" in deleted.stdout.splitlines()
    assert api.get("deployments", "ml", "ml-model") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "apiVersion: v1\nclusters: [ {name: x\n  bad: : :\n",
            "the kubeconfig is not valid YAML (line 3)",
            id="not-yaml",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Config\ncurrent-context: a\ncontexts: 7\n",
            "the kubeconfig has no usable current context",
            id="malformed",
        ),
    ],
)
def test_a_broken_kubeconfig_is_one_clear_line(tmp_path, monkeypatch, text, message):
    config = tmp_path / "kubeconfig"
    config.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(config))
    result = CliRunner().invoke(cli, ["status", "--target", "kubernetes"])
    # An MlkubeError: `mlkube` prints it as one `error: ...` line (a YAML traceback before).
    assert isinstance(result.exception, ClusterUnreachableError)
    assert message in str(result.exception)
