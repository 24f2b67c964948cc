import pytest

from mlkube.errors import SpecError
from mlkube.spec import ModelDeployment, PriorityClass, Quota, load_documents, load_spec
from mlkube.spec.loading import parse_documents
from mlkube.spec.schema import spec_json_schema

DESIGN_SKETCH = """\
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris, namespace: ml}
spec:
  model:
    uri: ./models/iris.onnx
    format: onnx
    trustPickle: false
  protocol: [v1, v2]
  replicas: 1
  resources:
    requests: {cpu: 500m, memory: 512Mi}
    limits:   {cpu: "2", memory: 2Gi, nvidia.com/gpu: 0}
  autoscaling:
    minReplicas: 1
    maxReplicas: 3
    metrics:
      - {type: cpu, targetUtilization: 70}
      - {type: concurrency, target: 8}
    behavior: {}
  batching: {maxBatchSize: 32, maxLatencyMs: 5}
  rollout:
    strategy: Canary
    steps: [{weight: 10, pause: 60s}, {weight: 50}]
    analysis: {maxErrorRate: 0.01}
  placement: {nodeSelector: {}, tolerations: [], affinity: {}, priorityClassName: ml-high}
  service: {type: NodePort, port: 8501, nodePort: 30050}
  storage: {pvc: {name: ml-model-pvc, size: 5Gi}}
  monitoring: {alerts: {p99LatencyMs: 500, errorRate: 0.01}}
  logging: {requests: {sampleRate: 0.1}}
"""


def test_the_design_sketch_is_a_valid_spec():
    (deployment,) = parse_documents(DESIGN_SKETCH, "sketch.yaml")
    assert isinstance(deployment, ModelDeployment)
    spec = deployment.spec
    cpu, memory = spec.resources.requests.get("cpu"), spec.resources.limits.get("memory")
    assert cpu is not None and memory is not None
    assert cpu.millis == 500
    assert memory.whole == 2 * 2**30
    assert spec.autoscaling is not None and spec.autoscaling.max_replicas == 3
    assert spec.rollout.steps[0].pause == 60
    assert spec.service.node_port == 30050
    assert deployment.model_name == "iris"


def issues_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as error:
        parse_documents(text, "spec.yaml")
    return [issue.render("spec.yaml") for issue in error.value.issues]


def test_every_problem_is_reported_at_once_with_line_and_path():
    text = (
        DESIGN_SKETCH.replace("format: onnx", "format: onnxx")
        .replace("replicas: 1\n", "replicas: -1\n")
        .replace("trustPickle: false", "trustPickles: false")
    )
    problems = issues_of(text)
    assert len(problems) == 3
    assert any(p.startswith("spec.yaml:7: spec.model.format:") and "'onnxx'" in p for p in problems)
    assert any(
        p.startswith("spec.yaml:8: spec.model.trustPickles: unknown field") and "trustPickle" in p
        for p in problems
    )
    assert any(p.startswith("spec.yaml:10: spec.replicas:") and "-1" in p for p in problems)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ("maxReplicas: 3", "maxReplicas: 0"), "greater than or equal to 1", id="max-zero"
        ),
        pytest.param(
            ("minReplicas: 1", "minReplicas: 5"),
            "maxReplicas (3) must be >= minReplicas (5)",
            id="min-over-max",
        ),
        pytest.param(
            ("cpu: 500m", "cpu: 5x"), "'5x' is not a Kubernetes quantity", id="bad-quantity"
        ),
        pytest.param(
            ("memory: 512Mi", "memory: 3Gi"),
            "requests.memory (3Gi) must not exceed limits.memory (2Gi)",
            id="request-over-limit",
        ),
        pytest.param(
            ("nvidia.com/gpu: 0", "nvidia.com/gpu: 0.5"), "whole number", id="fractional-gpu"
        ),
        pytest.param(
            ("nodePort: 30050", "nodePort: 80"),
            "greater than or equal to 30000",
            id="node-port-range",
        ),
        pytest.param(("type: NodePort, ", ""), "needs type NodePort", id="node-port-needs-type"),
        pytest.param(("{weight: 50}", "{weight: 5}"), "must not decrease", id="canary-weights"),
        pytest.param(("pause: 60s", "pause: soon"), "not a duration", id="bad-duration"),
        pytest.param(
            ("name: iris,", "name: Iris_1,"), "metadata.name: must be a DNS label", id="bad-name"
        ),
        pytest.param(
            ("{type: concurrency, target: 8}", "{type: gpu, target: 8}"),
            "does not match any of the expected tags",
            id="unknown-metric",
        ),
        pytest.param(
            ("{type: cpu, targetUtilization: 70}", "{type: cpu}"),
            "set exactly one of targetUtilization",
            id="cpu-needs-target",
        ),
        pytest.param(
            ("uri: ./models/iris.onnx", "uri: ftp://x/y"), "unsupported URI scheme", id="uri-scheme"
        ),
        pytest.param(("protocol: [v1, v2]", "protocol: [v1, v1]"), "twice", id="protocol-twice"),
    ],
)
def test_invalid_values_are_explained(change, message):
    old, new = change
    assert old in DESIGN_SKETCH
    problems = issues_of(DESIGN_SKETCH.replace(old, new, 1))
    assert any(message in p for p in problems), problems


def test_python_format_needs_an_entrypoint():
    text = DESIGN_SKETCH.replace("format: onnx", "format: python")
    assert any("entrypoint" in p for p in issues_of(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no document"),
        ("- a\n- b\n", "expected a mapping"),
        ("kind: Deployment\n", "kind must be one of"),
        ("apiVersion: v1\nkind: ModelDeployment\n", "must be mlkube.dev/v1alpha1"),
        ("a: [1, 2\n", "invalid YAML"),
        (
            "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: a}\n",
            "spec: required field is missing",
        ),
    ],
)
def test_document_level_problems(text, message):
    assert any(message in p for p in issues_of(text))


def test_several_documents_and_kinds_in_one_file(tmp_path):
    quota = """apiVersion: mlkube.dev/v1alpha1
kind: Quota
metadata: {name: team, namespace: ml}
spec:
  hard: {requests.cpu: "4", requests.memory: 8Gi, pods: "10"}
---
apiVersion: mlkube.dev/v1alpha1
kind: PriorityClass
metadata: {name: ml-high}
spec: {value: 1000}
"""
    path = tmp_path / "all.yaml"
    path.write_text(DESIGN_SKETCH + "---\n" + quota)
    documents = load_documents(path)
    assert [type(d) for d in documents] == [ModelDeployment, Quota, PriorityClass]
    quota_document = documents[1]
    assert isinstance(quota_document, Quota)
    assert quota_document.spec.hard["requests.memory"].whole == 8 * 2**30


def test_problems_in_the_second_document_name_it(tmp_path):
    text = (
        DESIGN_SKETCH + "---\napiVersion: mlkube.dev/v1alpha1\nkind: Quota\n"
        "metadata: {name: q}\nspec: {hard: {gpus: 1}}\n"
    )
    assert any(
        p.startswith("spec.yaml:") and "[document 2]" in p and "unknown quota key" in p
        for p in issues_of(text)
    )


def test_duplicate_names_are_refused():
    assert any("defined twice" in p for p in issues_of(DESIGN_SKETCH + "---\n" + DESIGN_SKETCH))


def test_a_folder_loads_every_yaml_file(tmp_path):
    (tmp_path / "a.yaml").write_text(DESIGN_SKETCH)
    (tmp_path / "b.yml").write_text(DESIGN_SKETCH.replace("name: iris,", "name: iris2,"))
    (tmp_path / "notes.txt").write_text("ignored")
    assert [d.metadata.name for d in load_documents(tmp_path)] == ["iris", "iris2"]


def test_model_paths_resolve_against_the_spec_file(tmp_path):
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "spec.yaml").write_text(DESIGN_SKETCH)
    assert load_spec(folder / "spec.yaml").model_path() == str(folder / "models" / "iris.onnx")


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_json_schema_describes_fields_with_their_docs():
    schema = spec_json_schema("ModelDeployment")
    model_spec = schema["$defs"]["ModelSpec"]
    assert "trustPickle" in model_spec["properties"]
    assert "arbitrary code" in model_spec["properties"]["trustPickle"]["description"]
    assert model_spec["additionalProperties"] is False
