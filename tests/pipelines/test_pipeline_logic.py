"""The pure parts of a run: which steps are ready or skipped, gates, templates, cache keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkube.pipelines.cache import cache_key, code_hash, fingerprint
from mlkube.pipelines.dag import progress
from mlkube.pipelines.gates import judge
from mlkube.pipelines.state import GateResult, PipelineRun, RunPhase, StepPhase, StepRun
from mlkube.pipelines.templates import MissingValueError, fill
from mlkube.spec import Pipeline, parse_documents
from mlkube.spec.job import TrainingJobSpec
from mlkube.spec.pipeline import Gate

DIAMOND = """
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: d}
spec:
  steps:
    - {name: a, job: {run: {module: m}}}
    - {name: b, dependsOn: [a], job: {run: {module: m}}}
    - {name: c, dependsOn: [a], job: {run: {module: m}}}
    - {name: d, dependsOn: [b, c], job: {run: {module: m}}}
"""


def _run() -> tuple[Pipeline, PipelineRun]:
    (doc,) = parse_documents(DIAMOND)
    assert isinstance(doc, Pipeline)
    steps = {s.name: StepRun(s.name) for s in doc.spec.steps}
    return doc, PipelineRun("default/d", 1, "manual", 0.0, steps)


def test_independent_steps_are_ready_together_once_their_dependency_passed() -> None:
    doc, run = _run()
    assert progress(doc.spec, run, 1.0).ready == ("a",)
    run.steps["a"].phase = StepPhase.CACHED
    assert progress(doc.spec, run, 1.0).ready == ("b", "c")


def test_a_failure_skips_everything_after_it_and_fails_the_run() -> None:
    doc, run = _run()
    run.steps["a"].phase = StepPhase.SUCCEEDED
    run.steps["b"].phase = StepPhase.FAILED
    run.steps["b"].reason = "exit 3"
    moved = progress(doc.spec, run, 1.0)
    assert moved.ready == ("c",)  # the other branch goes on
    assert run.steps["d"].phase is StepPhase.SKIPPED
    run.steps["c"].phase = StepPhase.SUCCEEDED
    assert progress(doc.spec, run, 2.0).finished == (RunPhase.FAILED, "step b failed: exit 3")


def test_a_failed_gate_stops_the_run() -> None:
    doc, run = _run()
    for name in "abcd":
        run.steps[name].phase = StepPhase.SUCCEEDED
    run.steps["d"].gates = [GateResult("x >= 1", False, 0.5)]
    run.steps["d"].reason = "x >= 1 failed (got 0.5)"
    assert progress(doc.spec, run, 1.0).finished == (
        RunPhase.STOPPED,
        "gate of d: x >= 1 failed (got 0.5)",
    )


def test_a_run_round_trips_through_json() -> None:
    _, run = _run()
    run.steps["a"].gates = [GateResult("x >= 1", True, 2.0, "note")]
    run.steps["a"].metrics = {"x": 2.0}
    assert PipelineRun.from_json(run.to_json()) == run


@pytest.mark.parametrize(
    ("op", "value", "actual", "passed"),
    [
        (">=", 0.9, 0.9, True),
        (">", 0.9, 0.9, False),
        ("<", 1, 0.5, True),
        ("==", 0.3, 0.1 + 0.2, True),
    ],
)
def test_gates_compare_as_written(op: str, value: float, actual: float, passed: bool) -> None:
    gate = Gate.model_validate({"metric": "m", "op": op, "value": value})
    assert judge(gate, {"m": actual}, None).passed is passed


def test_a_deployed_gate_compares_with_the_served_value_or_passes_without_one() -> None:
    gate = Gate.model_validate({"metric": "acc", "op": ">=", "value": "deployed"})
    assert judge(gate, {"acc": 0.9}, 0.95).passed is False
    first = judge(gate, {"acc": 0.9}, None, "iris serves no version of model iris")
    assert (first.passed, first.note) == (True, "iris serves no version of model iris")
    missing = judge(gate, {}, 0.95)
    assert (missing.passed, missing.note) == (False, "acc was not reported")


def test_templates_fill_parameters_and_outputs() -> None:
    outputs = {"train": {"modelUri": "models:/iris/2"}}
    text = "--model={{ steps.train.outputs.modelUri }} --n={{params.n}}"
    assert fill(text, {"n": "3"}, outputs) == "--model=models:/iris/2 --n=3"
    with pytest.raises(MissingValueError):
        fill("{{steps.train.outputs.other}}", {}, outputs)


def test_the_cache_key_changes_with_each_input(tmp_path: Path) -> None:
    job = TrainingJobSpec.model_validate({"run": {"script": "train.py"}})
    base = ("default/p", "train", job, "code", {"n": "1"}, {"a": {"x": "1"}}, "data")
    key = cache_key(*base)
    assert key == cache_key(*base)
    for index, other in [(3, "code2"), (4, {"n": "2"}), (5, {"a": {"x": "2"}}), (6, "data2")]:
        changed = list(base)
        changed[index] = other
        assert cache_key(*changed) != key  # type: ignore[arg-type]


def test_the_code_hash_covers_the_script_and_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import helper\n", encoding="utf-8")
    (tmp_path / "helper.py").write_text("X = 1\n", encoding="utf-8")
    job = TrainingJobSpec.model_validate({"run": {"script": "train.py"}})
    before = code_hash(job, str(tmp_path))
    (tmp_path / "helper.py").write_text("X = 2\n", encoding="utf-8")
    assert code_hash(job, str(tmp_path)) != before
    module = TrainingJobSpec.model_validate({"run": {"module": "mlkube.pipelines.cache"}})
    assert code_hash(module, ".").startswith("sha256:")


def test_a_fingerprint_sees_a_new_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1\n", encoding="utf-8")
    before = fingerprint([str(tmp_path)])
    (tmp_path / "b.csv").write_text("2\n", encoding="utf-8")
    assert fingerprint([str(tmp_path)]) != before
