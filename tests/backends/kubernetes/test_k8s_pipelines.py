"""A Pipeline on Kubernetes: Tekton Pipeline + PipelineRun or Argo Workflow (CronJob /
CronWorkflow on a schedule), golden files, strict validation against the transcribed CRD
schemas (``k8s_crd_schemas``) and the official ones, the deploy step's RBAC computed from the
deployment it applies, the in-cluster step commands, and ``mlkube apply`` through the
API-server double (``k8s_apiserver``).

Golden files are rewritten only with ``MLKUBE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from k8s_apiserver import FakeApiServer
from k8s_validation import VERSIONS, validate

import mlkube.backends.kubernetes.pipeline_steps as pipeline_steps
from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render import render
from mlkube.backends.kubernetes.render.documents import render_deployment
from mlkube.backends.kubernetes.render.manifest import kind_info
from mlkube.backends.kubernetes.render.pipelines import (
    DEPLOY_VERBS,
    engine_for,
    with_model,
)
from mlkube.cli import cli, main
from mlkube.clock import ManualClock
from mlkube.desired.capabilities import CAPABILITIES, BackendKind, Support, notes
from mlkube.spec import ModelDeployment, load_documents, parse_documents

HERE = Path(__file__).resolve().parent
SPEC = HERE / "pipelines" / "iris-pipeline.yaml"
GOLDEN = HERE / "golden"
Obj = dict[str, Any]


def _text(schedule: bool = False) -> str:
    text = SPEC.read_text(encoding="utf-8")
    if schedule:
        text = text.replace("  timeout: 1h\n", '  timeout: 1h\n  schedule: "0 3 * * *"\n')
    return text


def _documents(schedule: bool = False) -> list[Any]:
    return parse_documents(_text(schedule))


def _objects(engine: str, schedule: bool = False) -> list[Obj]:
    return list(render(_documents(schedule), pipeline_engine=engine).objects)  # type: ignore[arg-type]


def _pipeline_objects(objects: list[Obj]) -> list[Obj]:
    return [
        o for o in objects if o["metadata"]["labels"]["app.kubernetes.io/instance"] == "iris-ci"
    ]


def _one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


VARIANTS = [
    ("tekton", False),
    ("tekton", True),
    ("argo", False),
    ("argo", True),
]


def _variant_id(variant: tuple[str, bool]) -> str:
    return f"{variant[0]}{'-scheduled' if variant[1] else ''}"


# --- golden files and strict validation ------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_golden_files(variant):
    engine, schedule = variant
    golden = GOLDEN / f"pipeline-{_variant_id(variant)}.yaml"
    objects = _pipeline_objects(_objects(engine, schedule))
    text = yaml.safe_dump_all(objects, sort_keys=False)
    if os.environ.get("MLKUBE_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with MLKUBE_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(variant, version):
    engine, schedule = variant
    problems = [p for o in _objects(engine, schedule) for p in validate(o, version)]
    assert problems == []


def test_the_schemas_catch_what_the_api_server_or_the_engine_would_refuse():
    objects = _objects("tekton")
    pipeline = copy.deepcopy(_one(objects, "Pipeline"))
    evaluate = pipeline["spec"]["tasks"][1]
    evaluate["taskSpec"]["steps"][0]["resources"] = {}  # a Container field, not a Step's
    evaluate["runAfter"] = []  # uses train's results without running after it
    evaluate["taskSpec"]["steps"][1]["volumeMounts"][0]["name"] = "nope"
    problems = "\n".join(validate(pipeline, VERSIONS[-1]))
    assert "'resources' was unexpected" in problems
    assert "without runAfter train" in problems
    assert "names no volume" in problems

    run = copy.deepcopy(_one(objects, "PipelineRun"))
    run["spec"]["timeouts"]["pipeline"] = "1 hour"
    assert "does not match" in "\n".join(validate(run, VERSIONS[-1]))

    workflow = copy.deepcopy(_one(_objects("argo"), "Workflow"))
    dag = workflow["spec"]["templates"][0]["dag"]["tasks"]
    dag[1]["dependencies"] = []
    workflow["spec"]["templates"][1]["retryStrategy"]["retryPolicy"] = "Sometimes"
    workflow["spec"]["templates"][2]["containerSet"]["containers"][0]["resource"] = {}
    problems = "\n".join(validate(workflow, VERSIONS[-1]))
    assert "not an output of a dependency" in problems
    assert "'Sometimes' is not one of" in problems
    assert "'resource' was unexpected" in problems


# --- what is rendered ------------------------------------------------------------------------
def test_tekton_steps_are_tasks_in_dependency_order_with_retries_timeouts_and_results():
    objects = _objects("tekton")
    pipeline = _one(objects, "Pipeline")
    tasks = {t["name"]: t for t in pipeline["spec"]["tasks"]}
    assert list(tasks) == ["train", "evaluate", "evaluate-gates", "deploy"]
    assert tasks["train"]["retries"] == 2 and tasks["train"]["timeout"] == "1800s"
    assert tasks["evaluate"]["runAfter"] == ["train"]
    assert tasks["evaluate-gates"]["runAfter"] == ["evaluate"]
    # what depended on a gated step runs after its gates
    assert tasks["deploy"]["runAfter"] == ["evaluate-gates", "train"]
    params = {p["name"]: p["value"] for p in tasks["evaluate"]["params"]}
    assert params == {
        "run": "$(context.pipelineRun.name)",
        "ref-0": "$(tasks.train.results.modelUri)",
        "ref-1": "$(tasks.train.results.modelVersion)",
    }
    job, outputs = tasks["evaluate"]["taskSpec"]["steps"]
    assert job["args"] == ["-m", "trainer.evaluate", "--model", "$(params.ref-0)"]
    assert {"name": "MODEL_VERSION", "value": "$(params.ref-1)"} in job["env"]
    assert [r["name"] for r in tasks["evaluate"]["taskSpec"]["results"]] == [
        "outputDir",
        "accuracy",
    ]
    assert outputs["args"][:5] == ["outputs", "--dir", "/mnt/output", "--to", "/tekton/results"]
    # the job's resources, as a TrainingJob's worker
    train = tasks["train"]["taskSpec"]["steps"][0]
    assert train["computeResources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert train["args"] == ["-m", "trainer.iris", "--epochs", "$(params.ref-0)"]
    assert {p["name"]: p["value"] for p in tasks["train"]["params"]}["ref-0"] == "$(params.epochs)"
    # each run writes under <run>/<step> on the claim
    mount = train["volumeMounts"][0]
    assert mount["subPathExpr"] == "$(MLKUBE_PIPELINE_RUN)/train"
    gate = tasks["evaluate-gates"]["taskSpec"]["steps"][0]
    assert gate["args"] == [
        "gate",
        "--step",
        "evaluate",
        "--check",
        "accuracy>=0.9",
        "$(params.metric-accuracy)",
    ]
    run = _one(objects, "PipelineRun")
    assert run["spec"]["timeouts"] == {"pipeline": "3600s"}
    deploy = next(s for s in run["spec"]["taskRunSpecs"] if s["pipelineTaskName"] == "deploy")
    assert deploy["serviceAccountName"] == "iris-ci-deploy"


def test_argo_is_one_dag_with_a_template_per_task_and_output_parameters():
    objects = _objects("argo")
    workflow = _one(objects, "Workflow")
    spec = workflow["spec"]
    assert spec["entrypoint"] == "pipeline"
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["arguments"] == {"parameters": [{"name": "epochs", "value": "20"}]}
    dag = {t["name"]: t for t in spec["templates"][0]["dag"]["tasks"]}
    assert dag["deploy"]["dependencies"] == ["evaluate-gates", "train"]
    assert dag["evaluate"]["arguments"]["parameters"][1] == {
        "name": "ref-0",
        "value": "{{tasks.train.outputs.parameters.modelUri}}",
    }
    templates = {t["name"]: t for t in spec["templates"][1:]}
    train = templates["train"]
    assert train["retryStrategy"] == {"limit": "2", "retryPolicy": "OnFailure"}
    assert train["activeDeadlineSeconds"] == 1800
    job, main = train["containerSet"]["containers"]
    assert (job["name"], main["name"], main["dependencies"]) == ("job", "main", ["job"])
    assert job["args"][-1] == "{{inputs.parameters.ref-0}}"
    assert {"name": "modelUri", "valueFrom": {"path": "/mlkube/outputs/modelUri"}} in train[
        "outputs"
    ]["parameters"]
    assert templates["deploy"]["serviceAccountName"] == "iris-ci-deploy"
    # the executor's one permission, for every pod of the workflow
    executor = _one(objects, "Role", "iris-ci-argo-executor")
    assert executor["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]


def test_a_schedule_is_a_cronjob_that_creates_runs_or_an_argo_cronworkflow():
    tekton = _objects("tekton", schedule=True)
    assert not [o for o in tekton if o["kind"] == "PipelineRun"]  # nothing runs at apply
    cron = _one(tekton, "CronJob")
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == ("0 3 * * *", "Etc/UTC")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "iris-ci-trigger"
    assert pod["containers"][0]["args"] == ["trigger", "/etc/mlkube/run.yaml"]
    template = yaml.safe_load(_one(tekton, "ConfigMap", "iris-ci-trigger")["data"]["run.yaml"])
    assert template["kind"] == "PipelineRun"
    assert template["spec"]["pipelineRef"] == {"name": "iris-ci"}
    assert (
        validate(pipeline_steps.scheduled_run(template, dt.datetime.now(dt.UTC)), VERSIONS[-1])
        == []
    )
    assert _one(tekton, "Role", "iris-ci-trigger")["rules"] == [
        {
            "apiGroups": ["tekton.dev"],
            "resources": ["pipelineruns"],
            "verbs": ["get", "create", "patch"],
        }
    ]
    argo = _objects("argo", schedule=True)
    assert not [o for o in argo if o["kind"] == "Workflow"]
    cron_workflow = _one(argo, "CronWorkflow")
    assert cron_workflow["spec"]["schedules"] == ["0 3 * * *"]
    assert cron_workflow["spec"]["timezone"] == "UTC"
    assert cron_workflow["spec"]["workflowSpec"]["entrypoint"] == "pipeline"


def test_the_run_is_named_after_what_it_runs():
    first = _one(_objects("tekton"), "PipelineRun")["metadata"]["name"]
    assert first == _one(_objects("tekton"), "PipelineRun")["metadata"]["name"]
    changed = parse_documents(_text().replace('epochs: "20"', 'epochs: "30"'))
    second = _one(list(render(changed).objects), "PipelineRun")["metadata"]["name"]
    assert first.startswith("iris-ci-") and second != first


def test_a_trainingjob_a_pipeline_runs_is_not_also_a_job_of_its_own():
    objects = _objects("tekton")
    assert not [o for o in objects if o["kind"] == "Job"]


def test_engine_choice_prefers_tekton_and_says_why():
    assert engine_for(True, True)[0] == "tekton"
    assert "Argo Workflows is served too" in engine_for(True, True)[1]
    assert engine_for(False, True) == (
        "argo",
        "the cluster serves argoproj.io/v1alpha1 Workflows (no Tekton)",
    )
    with pytest.raises(RenderError, match=r"needs Tekton .* or Argo Workflows"):
        engine_for(False, False)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    claimName: models\n", "", "registers model 'iris', which on a cluster"),
        (
            "kind: ModelDeployment\nmetadata: {name: iris,",
            "kind: ModelDeployment\nmetadata: {name: other,",
            "deployment 'iris' is not among the files applied",
        ),
        (
            "  run: {module: trainer.iris",
            "  workers: 2\n  run: {module: trainer.iris",
            "runs one worker on a cluster",
        ),
    ],
)
def test_what_a_cluster_cannot_run_is_refused_with_the_reason(old, new, message):
    text = _text()
    assert old in text
    with pytest.raises(RenderError, match=message):
        render(parse_documents(text.replace(old, new)))


_INLINE = """\
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: p, namespace: ml}
spec:
  steps:
    - name: train
      job:
        run: {module: train}
        EXTRA
"""
PIPELINE_REFUSES = [
    pytest.param("workers: 2", "runs one worker on a cluster", id="workers"),
    pytest.param(
        "output: {model: {name: m, file: m.onnx, format: onnx}}",
        "registers model 'm', which on a cluster",
        id="model-without-claim",
    ),
]


@pytest.mark.parametrize(("extra", "message"), PIPELINE_REFUSES)
def test_what_the_table_says_a_cluster_refuses_in_a_pipeline_the_renderer_refuses(extra, message):
    document = parse_documents(_INLINE.replace("EXTRA", extra))[0]
    assert any(n.is_error for n in notes([document], BackendKind.KUBERNETES))
    with pytest.raises(RenderError, match=message):
        render([document])


def test_every_unsupported_pipeline_row_has_a_refusal_test():
    rows = [
        r
        for r in CAPABILITIES
        if r.kind == "Pipeline" and r.kubernetes.support is Support.UNSUPPORTED
    ]
    assert len(rows) == len(PIPELINE_REFUSES)


def test_watch_and_deployed_gates_are_said_at_apply(api, tmp_path):
    text = _text().replace(
        "value: 0.9}", 'value: 0.9}\n        - {metric: accuracy, op: ">=", value: deployed}'
    )
    report = KubernetesBackend(namespace="ml", clock=ManualClock()).apply((_write(tmp_path, text),))
    warnings = "\n".join(report.warnings)
    assert "spec.watch is ignored on kubernetes: the paths are on this machine" in warnings
    assert "spec.steps.gates.value is ignored on kubernetes: deployed" in warnings


# --- RBAC of the deploy step -----------------------------------------------------------------
def _rules_grant(rules: list[Obj], verb: str, group: str, plural: str) -> bool:
    return any(
        group in r["apiGroups"] and plural in r["resources"] and verb in r["verbs"] for r in rules
    )


@pytest.mark.parametrize("engine", ["tekton", "argo"])
def test_the_deploy_role_grants_exactly_the_kinds_the_deployment_renders(engine):
    documents = _documents()
    deployment = next(d for d in documents if isinstance(d, ModelDeployment))
    pointed = with_model(deployment, "pvc://models/iris-ci-abc/train/model.onnx", "onnx")
    applied = {
        (kind_info(o["kind"]).api_version.rpartition("/")[0], kind_info(o["kind"]).plural)
        for o in render_deployment(pointed).objects
    }
    role = _one(_objects(engine), "Role", "iris-ci-deploy")
    rules = role["rules"]
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert "resourceNames" not in rule or rule["resourceNames"]
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == applied
    for group, plural in applied:
        for verb in ("get", "list", "patch", "create", "delete"):
            assert _rules_grant(rules, verb, group, plural)
    assert {v for rule in rules for v in rule["verbs"]} == set(DEPLOY_VERBS)
    binding = _one(_objects(engine), "RoleBinding", "iris-ci-deploy")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "iris-ci-deploy", "namespace": "ml"}
    ]


# --- the in-cluster commands -----------------------------------------------------------------
def test_outputs_writes_each_declared_output_and_fails_on_a_missing_metric(tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    (output / "metrics.json").write_text(json.dumps({"accuracy": 0.97}), encoding="utf-8")
    (output / "model.onnx").write_bytes(b"onnx")
    results = tmp_path / "results"
    code = pipeline_steps.main(
        [
            "outputs", "--dir", str(output), "--to", str(results), "--step", "train",
            "--run", "iris-ci-abc", "--claim", "models", "--metrics", "accuracy",
            "--model", "iris", "--model-file", "model.onnx",
        ]
    )  # fmt: skip
    assert code == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in results.iterdir()}
    assert written == {
        "outputDir": "pvc://models/iris-ci-abc/train",
        "accuracy": "0.97",
        "modelName": "iris",
        "modelVersion": "iris-ci-abc",
        "modelUri": "pvc://models/iris-ci-abc/train/model.onnx",
    }
    with pytest.raises(pipeline_steps.StepFailedError, match="has no number 'f1'"):
        pipeline_steps.step_outputs(
            output,
            metrics_file="metrics.json",
            metrics=["f1"],
            step="train",
            run="r",
            claim=None,
            model=None,
            model_file=None,
        )


def test_a_gate_fails_with_the_reason(capsys):
    assert (
        pipeline_steps.main(["gate", "--step", "evaluate", "--check", "accuracy>=0.9", "0.97"]) == 0
    )
    code = pipeline_steps.main(
        [
            "gate",
            "--step",
            "evaluate",
            "--check",
            "accuracy>=0.9",
            "0.85",
            "--check",
            "loss<0.5",
            "0.1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "step 'evaluate': gate failed: accuracy >= 0.9 failed (got 0.85)" in err
    assert "the pipeline stops here" in err
    passed, line = pipeline_steps.gate_verdict("evaluate", "accuracy>=deployed", "0.9")
    assert passed and "no model registry on a cluster" in line


def test_a_scheduled_run_is_named_after_its_minute():
    template = {"kind": "PipelineRun", "metadata": {"name": "iris-ci", "namespace": "ml"}}
    now = dt.datetime(2026, 12, 1, 3, 0, 12, tzinfo=dt.UTC)
    run = pipeline_steps.scheduled_run(template, now)
    assert run["metadata"] == {"name": "iris-ci-202612010300", "namespace": "ml"}


# --- on the API-server double ----------------------------------------------------------------
@pytest.fixture
def api(api: FakeApiServer) -> FakeApiServer:
    api.add_namespace("ml")
    return api


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_apply_creates_the_tekton_objects_and_says_why_tekton(api, tmp_path):
    path = _write(tmp_path, _text())
    result = CliRunner().invoke(cli, ["apply", path, "--target", "kubernetes", "-n", "ml"])
    assert result.exit_code == 0, result.output
    assert "pipeline 'iris-ci' runs on Tekton: the cluster serves tekton.dev/v1" in result.output
    assert "Argo Workflows is served too" in result.output
    pipeline = api.get("pipelines", "ml", "iris-ci")
    assert [t["name"] for t in pipeline["spec"]["tasks"]][-1] == "deploy"
    runs = [k for k in api.objects if k[0] == "pipelineruns"]
    assert len(runs) == 1
    assert api.get("roles", "ml", "iris-ci-deploy") is not None
    assert api.get("deployments", "ml", "iris") is not None  # the deployment it rolls out
    # applying the same pipeline again starts no second run
    again = CliRunner().invoke(cli, ["apply", path, "--target", "kubernetes", "-n", "ml"])
    assert again.exit_code == 0, again.output
    assert [k for k in api.objects if k[0] == "pipelineruns"] == runs


def test_apply_makes_an_argo_workflow_where_only_argo_is_served(api, tmp_path):
    api.served_crd_groups.discard("tekton.dev")
    report = KubernetesBackend(namespace="ml", clock=ManualClock()).apply(
        (_write(tmp_path, _text()),)
    )
    assert any("runs on Argo Workflows" in w for w in report.warnings)
    workflows = [k for k in api.objects if k[0] == "workflows"]
    assert len(workflows) == 1
    assert not [k for k in api.objects if k[0].startswith("pipeline")]


def test_apply_without_tekton_or_argo_says_so_and_changes_nothing(api, tmp_path, capsys):
    api.served_crd_groups -= {"tekton.dev", "argoproj.io"}
    path = _write(tmp_path, _text())
    with pytest.raises(SystemExit) as exited:
        main(["apply", path, "--target", "kubernetes", "-n", "ml"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "needs Tekton" in err and "Traceback" not in err
    assert not [k for k in api.objects if k[1] == "ml"]


def test_the_trigger_applies_a_run_for_the_minute(api, tmp_path):
    (config,) = [
        o
        for o in _objects("tekton", schedule=True)
        if o["metadata"]["name"] == "iris-ci-trigger" and o["kind"] == "ConfigMap"
    ]
    api.put(
        next(r for r in __import__("k8s_apiserver").RESOURCES if r.plural == "pipelines"),
        _one(_objects("tekton", schedule=True), "Pipeline"),
    )
    run_file = tmp_path / "run.yaml"
    run_file.write_text(config["data"]["run.yaml"], encoding="utf-8")
    # as the CronJob's pod: holding only the trigger's Role
    api.restrict_to(_one(_objects("tekton", schedule=True), "Role", "iris-ci-trigger")["rules"])
    assert pipeline_steps.main(["trigger", str(run_file)]) == 0
    (run,) = [k for k in api.objects if k[0] == "pipelineruns"]
    assert run[2].startswith("iris-ci-20")


def test_the_deploy_step_rolls_out_with_only_its_role(api, tmp_path):
    """The deploy step's ``mlkube apply`` and rollout wait succeed holding exactly the
    rendered Role: every request it makes is one the Role allows."""
    documents = _documents()
    deployment = next(d for d in documents if isinstance(d, ModelDeployment))
    plain = deployment.model_copy(
        update={
            "spec": deployment.spec.model_copy(update={"rollout": type(deployment.spec.rollout)()})
        }
    )
    role = _one(list(render([*documents[:2], plain]).objects), "Role", "iris-ci-deploy")
    api.restrict_to(role["rules"])
    document = with_model(plain, "pvc://models/iris-ci-abc/train/model.onnx", "onnx")
    lines: list[str] = []
    status = pipeline_steps.deploy(
        KubernetesBackend(namespace="ml", clock=ManualClock()),
        document,
        timeout_s=60,
        clock=ManualClock(),
        say=lines.append,
    )
    assert status.phase == "Complete"
    assert not [line for line in lines if "forbidden" in line]  # every request was allowed
    assert any("prune looked only at the" in line for line in lines)
    live = api.get("configmaps", "ml", "iris-config")
    assert "/models/iris-ci-abc/train/model.onnx" in live["data"]["spec.yaml"]
    # and nothing else: the Role allows no other kind
    cluster = Cluster(Target(namespace="ml"))
    try:
        with pytest.raises(Exception, match="forbidden"):
            cluster.apply(_one(_objects("tekton"), "Pipeline"), dry_run=False, force=False)
    finally:
        cluster.close()


def test_load_documents_of_the_spec_file():
    # the spec file the docs point at loads as it is
    assert {d.kind for d in load_documents(SPEC)} == {"TrainingJob", "Pipeline", "ModelDeployment"}


def test_a_rollout_that_fails_fails_the_deploy_step(api, tmp_path):
    documents = _documents()
    deployment = next(d for d in documents if isinstance(d, ModelDeployment))
    api.rollout = "deadline"  # the Deployment controller reports ProgressDeadlineExceeded
    document = with_model(deployment, "pvc://models/iris-ci-abc/train/model.onnx", "onnx")
    with pytest.raises(pipeline_steps.StepFailedError, match=r"deployment 'iris': .*deadline"):
        pipeline_steps.deploy(
            KubernetesBackend(namespace="ml", clock=ManualClock()),
            document,
            timeout_s=60,
            clock=ManualClock(),
            say=lambda line: None,
        )


def test_render_says_it_wrote_tekton(tmp_path):
    result = CliRunner().invoke(cli, ["render", _write(tmp_path, _text())])
    assert result.exit_code == 0, result.output
    assert "pipeline 'iris-ci': rendered for Tekton here" in result.output
    assert "kind: PipelineRun" in result.output


def test_delete_removes_the_pipeline_its_runs_and_accounts_not_the_deployment(api, tmp_path):
    path = _write(tmp_path, _text())
    KubernetesBackend(namespace="ml", clock=ManualClock()).apply((path,))
    report = KubernetesBackend(namespace="ml").delete("iris-ci")
    deleted = {(c.object.kind, c.object.name) for c in report.changes if c.action == "deleted"}
    assert ("Pipeline", "iris-ci") in deleted
    assert ("Role", "iris-ci-deploy") in deleted
    assert api.get("pipelines", "ml", "iris-ci") is None
    assert api.get("deployments", "ml", "iris") is not None  # the deployment is its own


_CANARY = """\
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris, namespace: ml}
spec:
  model: {uri: "pvc://models/seed/model.onnx", format: onnx}
  replicas: 2
  rollout:
    strategy: Canary
    steps: [{weight: 10, pause: 60s}, {weight: 50, pause: 60s}]
  kubernetes: {gateway: infra/public, stableModelUri: "pvc://models/seed/model.onnx"}
"""


def _canary_deploy(clock: ManualClock, say: Any) -> Any:
    (document,) = parse_documents(_CANARY)
    assert isinstance(document, ModelDeployment)
    pointed = with_model(document, "pvc://models/iris-ci-abc/train/model.onnx", "onnx")
    backend = KubernetesBackend(namespace="ml", clock=clock)
    return pipeline_steps.deploy(backend, pointed, timeout_s=600, clock=clock, say=say)


def test_the_deploy_step_runs_a_canary_through_its_steps(api):
    clock = ManualClock(start=10_000.0)
    lines: list[str] = []
    status = _canary_deploy(clock, lines.append)
    assert status.phase == "Complete"
    rollout = [line for line in lines if line.startswith("rollout:")]
    assert len(rollout) == len(set(rollout))  # one line per change
    assert any("promoting" in line for line in rollout)
    configs = [stored.obj for key, stored in api.objects.items() if key[0] == "configmaps"]
    assert "/models/iris-ci-abc/train/model.onnx" in json.dumps(configs)


def test_an_aborted_canary_fails_the_deploy_step_and_the_old_version_serves(api):
    clock = ManualClock(start=10_000.0)

    def abort_at_first_step(line: str) -> None:
        if line.startswith("rollout: Progressing"):
            KubernetesBackend(namespace="ml", clock=clock).rollout_abort("iris")

    with pytest.raises(pipeline_steps.StepFailedError, match="the previous version keeps serving"):
        _canary_deploy(clock, abort_at_first_step)
    route = api.get("httproutes", "ml", "iris")
    assert route is not None
    weights = {r["name"]: r["weight"] for r in route["spec"]["rules"][-1]["backendRefs"]}
    assert weights["iris-stable"] == 100 and weights.get("iris-canary", 0) == 0
