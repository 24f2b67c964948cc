"""TrainingJob and BatchInference documents: what they accept, and what they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkube.errors import SpecError
from mlkube.spec import BatchInference, TrainingJob, load_documents, parse_documents
from mlkube.spec.schema import spec_json_schema

JOB = """
apiVersion: mlkube.dev/v1alpha1
kind: TrainingJob
metadata: {name: train-iris, namespace: ml}
spec:
  run: {script: train.py, args: ["--epochs", "3"]}
  workers: 2
  resources: {requests: {cpu: "1", memory: 1Gi}}
  backoffLimit: 1
  activeDeadlineSeconds: 2h
  placement: {priorityClassName: high}
  output: {path: out, model: {name: iris, file: model.onnx, format: onnx}}
"""

BATCH = """
apiVersion: mlkube.dev/v1alpha1
kind: BatchInference
metadata: {name: score}
spec:
  model: {uri: "models:/iris/3", format: onnx}
  input: {path: "data/*.csv", idColumn: id}
  workers: 2
  shardRows: 5000
"""


def test_a_training_job_parses_with_its_defaults_and_durations() -> None:
    (job,) = parse_documents(JOB)
    assert isinstance(job, TrainingJob)
    assert job.spec.workers == 2
    assert job.spec.active_deadline_seconds == 7200.0
    assert job.spec.termination_grace_period == 30.0
    assert job.spec.output.model is not None and job.spec.output.model.name == "iris"
    assert job.spec.metrics.file == "metrics.json"
    assert job.spec.kubernetes.kind == "Auto"


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB, encoding="utf-8")
    (job,) = load_documents(tmp_path / "job.yaml")
    assert isinstance(job, TrainingJob)
    assert job.local_path("train.py") == str((tmp_path / "train.py").resolve())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("run: {script: train.py, module: pkg.train}", "exactly one of module or script"),
        ("run: {args: [x]}", "exactly one of module or script"),
        ("run: {module: '1bad'}", "spec.run.module"),
        ("workers: 0", "spec.workers"),
        ("workers: 65", "spec.workers"),
        ("backoffLimit: -1", "spec.backoffLimit"),
    ],
)
def test_a_bad_training_job_names_the_field(change: str, message: str) -> None:
    key = change.split(":")[0]
    lines = [line for line in JOB.splitlines() if not line.strip().startswith(f"{key}:")]
    text = "\n".join(lines) + f"\n  {change}\n"
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        parse_documents(text)


def test_a_batch_inference_names_a_registered_model_version() -> None:
    (batch,) = parse_documents(BATCH)
    assert isinstance(batch, BatchInference)
    assert batch.spec.model.uri == "models:/iris/3"
    assert batch.spec.input.id_column == "id"
    assert batch.spec.output.format == "jsonl"


def test_an_unknown_kind_lists_the_job_kinds() -> None:
    with pytest.raises(SpecError, match="TrainingJob, BatchInference"):
        parse_documents(JOB.replace("kind: TrainingJob", "kind: Trainingjob"))


def test_the_schema_describes_the_job_kinds() -> None:
    schema = spec_json_schema("all")
    assert {"TrainingJob", "BatchInference"} <= set(schema["$defs"])
    assert spec_json_schema("TrainingJob")["properties"]["kind"]["const"] == "TrainingJob"
