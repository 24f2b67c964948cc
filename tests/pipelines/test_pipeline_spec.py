"""Pipeline documents: what they accept, and every reference checked when loaded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mlkube.errors import SpecError
from mlkube.spec import Pipeline, load_documents, parse_documents
from mlkube.spec.cron import parse_cron
from mlkube.spec.pipeline import topological_order
from mlkube.spec.schema import spec_json_schema

PIPELINE = """
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: iris}
spec:
  parameters: {epochs: "3"}
  schedule: "0 3 * * *"
  watch: [data]
  timeout: 10m
  steps:
    - name: train
      job:
        run: {script: train.py, args: ["--epochs", "{{params.epochs}}"]}
        output: {model: {name: iris, file: model.onnx, format: onnx}}
      retries: 1
      timeout: 2m
    - name: evaluate
      dependsOn: [train]
      outputs: [accuracy]
      job:
        run: {script: evaluate.py, args: ["{{ steps.train.outputs.modelUri }}"]}
      gates:
        - {metric: accuracy, op: ">=", value: 0.9}
        - {metric: accuracy, op: ">=", value: deployed}
    - name: deploy
      dependsOn: [evaluate]
      deploy: {deployment: iris, model: iris}
"""


def _with(old: str, new: str) -> str:
    assert old in PIPELINE
    return PIPELINE.replace(old, new)


def test_a_pipeline_parses_with_steps_gates_and_triggers() -> None:
    (pipeline,) = parse_documents(PIPELINE)
    assert isinstance(pipeline, Pipeline)
    assert topological_order(pipeline.spec) == ["train", "evaluate", "deploy"]
    assert pipeline.step("train").timeout == 120.0
    assert pipeline.step("evaluate").gates[1].value == "deployed"
    assert pipeline.spec.timeout == 600.0
    deploy = pipeline.step("deploy").deploy
    assert deploy is not None and deploy.deployment == "iris"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("dependsOn: [train]", "dependsOn: [trian]", "dependsOn: no step named 'trian'"),
        ("name: train", "name: evaluate", "step 'evaluate' is defined twice"),
        ("steps.train.outputs.modelUri", "steps.nope.outputs.x", "no step named 'nope'"),
        (
            "steps.train.outputs.modelUri",
            "steps.train.outputs.accuracy",
            "step 'train' has no output 'accuracy'",
        ),
        ("{{params.epochs}}", "{{params.steps}}", "no parameter named 'steps'"),
        ("{{params.epochs}}", "{{whatever}}", "expected {{steps.STEP.outputs.NAME}}"),
        (
            "{{params.epochs}}",
            "{{steps.evaluate.outputs.accuracy}}",
            "does not depend on 'evaluate'",
        ),
        ('op: ">=", value: 0.9', 'op: "=>", value: 0.9', "gates[0].op"),
        ("value: deployed", "value: served", "gates[1].value"),
        ('"0 3 * * *"', '"0 3 * *"', "a cron schedule has 5 fields"),
        ('"0 3 * * *"', '"0 25 * * *"', "hour: 25 is outside 0-23"),
        ('"0 3 * * *"', '"@often"', "unknown macro"),
        ("model: iris}", "model: other}", "no step 'deploy' depends on registers model 'other'"),
        (
            "deploy: {deployment: iris",
            "jobRef: x\n      deploy: {deployment: iris",
            "exactly one of",
        ),
        ("retries: 1", "retries: -1", "retries"),
    ],
)
def test_mistakes_are_errors_naming_the_field(old: str, new: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_documents(_with(old, new), "pipeline.yaml")
    assert message in str(raised.value)
    assert "pipeline.yaml:" in str(raised.value)


def test_a_cycle_is_named_step_by_step() -> None:
    text = _with("name: train\n", "name: train\n      dependsOn: [deploy]\n")
    with pytest.raises(SpecError, match="cycle: train -> deploy -> evaluate -> train"):
        parse_documents(text)


def test_a_deployed_gate_needs_a_deploy_step() -> None:
    text = PIPELINE[: PIPELINE.index("    - name: deploy")]
    with pytest.raises(SpecError, match="the pipeline has no deploy step"):
        parse_documents(text)


REFERENCED = """
apiVersion: mlkube.dev/v1alpha1
kind: TrainingJob
metadata: {name: train-iris}
spec:
  run: {script: train.py}
  output: {model: {name: iris, file: model.onnx, format: onnx}}
---
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: iris}
spec:
  steps:
    - {name: train, jobRef: train-iris}
    - name: check
      dependsOn: [train]
      job: {run: {module: check, args: ["{{steps.train.outputs.modelVersion}}"]}}
    - {name: deploy, dependsOn: [check], deploy: {deployment: iris, model: iris}}
"""


def test_a_job_ref_names_a_training_job_in_the_files_loaded(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(REFERENCED, encoding="utf-8")
    documents = load_documents(tmp_path / "p.yaml")
    pipeline = next(d for d in documents if isinstance(d, Pipeline))
    assert pipeline.local_path("data") == str((tmp_path / "data").resolve())


def test_an_unknown_job_ref_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        REFERENCED.replace("jobRef: train-iris", "jobRef: nope"), "utf-8"
    )
    with pytest.raises(SpecError) as raised:
        load_documents(tmp_path / "p.yaml")
    text = str(raised.value)
    assert "p.yaml" in text and "spec.steps[0].jobRef" in text and "'nope'" in text


def test_references_into_a_job_ref_are_checked_once_loaded(tmp_path: Path) -> None:
    text = REFERENCED.replace("outputs.modelVersion", "outputs.loss")
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match="step 'train' has no output 'loss'"):
        load_documents(tmp_path / "p.yaml")


def test_the_schema_describes_the_pipeline_kind() -> None:
    schema = spec_json_schema("Pipeline")
    assert schema["title"] == "Pipeline"
    assert "PipelineStep" in schema["$defs"]


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("0 3 * * *", "2026-12-01T21:48", "2026-12-02T03:00"),
        ("*/15 * * * *", "2026-12-01T21:48", "2026-12-01T22:00"),
        ("30 9 * * mon-fri", "2026-12-04T10:00", "2026-12-07T09:30"),  # Fri → Mon
        ("0 0 29 2 *", "2026-03-01T00:00", "2028-02-29T00:00"),
        ("@hourly", "2026-12-01T21:00", "2026-12-01T22:00"),
        ("0 12 1 * 0", "2026-12-02T00:00", "2026-12-06T12:00"),  # either day field
    ],
)
def test_cron_finds_the_next_minute(text: str, after: str, expected: str) -> None:
    schedule = parse_cron(text)
    found = schedule.next_after(dt.datetime.fromisoformat(after))
    assert found == dt.datetime.fromisoformat(expected)
