"""A finished TrainingJob's output registered as a version, with metrics and lineage."""

import pytest
import yaml

from mlkube.registry import Registry, RegistryError, hash_paths, registry_root
from mlkube.registry.jobs import register_job_output, spec_hash
from mlkube.spec.job import TrainingJob
from mlkube.spec.loading import load_documents


def _job(tmp_path, model: dict | None) -> TrainingJob:
    output: dict = {"path": "out"}
    if model is not None:
        output["model"] = model
    path = tmp_path / "train.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "train", "namespace": "ml"},
                "spec": {
                    "run": {"module": "train", "args": ["--lr", "0.1"]},
                    "workers": 2,
                    "output": output,
                },
            }
        )
    )
    document = load_documents(path)[0]
    assert isinstance(document, TrainingJob)
    return document


def test_the_output_file_becomes_the_next_version(tmp_path):
    job = _job(tmp_path, {"name": "iris", "file": "model.onnx", "format": "onnx"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out/model.onnx").write_bytes(b"m")
    (tmp_path / "data.csv").write_text("x\n1\n")
    inputs = hash_paths([tmp_path / "data.csv"])
    state = tmp_path / "state"
    version = register_job_output(
        job, run_id="run-7", metrics={"loss": 0.25}, inputs_hash=inputs, state_dir=state
    )
    assert version is not None
    assert version.uri == "models:/iris/1"
    found = Registry(registry_root(state)).resolve("models:/iris/latest")
    assert found.metrics == {"loss": 0.25}
    assert found.params == {"args": "--lr 0.1", "module": "train", "workers": "2"}
    assert found.lineage.job == "ml/train"
    assert found.lineage.run_id == "run-7"
    assert found.lineage.inputs_hash == inputs
    assert found.lineage.spec_hash == spec_hash(job)


def test_no_model_named_registers_nothing_and_a_missing_file_is_an_error(tmp_path):
    assert register_job_output(_job(tmp_path, None), run_id="r", state_dir=tmp_path) is None
    job = _job(tmp_path, {"name": "iris", "file": "model.onnx", "format": "onnx"})
    with pytest.raises(RegistryError, match=r"wrote no output\.model\.file 'model\.onnx'"):
        register_job_output(job, run_id="r", state_dir=tmp_path)


def test_the_spec_hash_changes_with_the_spec(tmp_path):
    one = _job(tmp_path, None)
    two = _job(tmp_path, {"name": "iris", "file": "m.onnx", "format": "onnx"})
    assert spec_hash(one) == spec_hash(_job(tmp_path, None))
    assert spec_hash(one) != spec_hash(two)
