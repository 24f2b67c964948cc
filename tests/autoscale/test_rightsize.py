"""recommend(): requests, limits and the rps target; --apply keeps the rest of the file."""

from __future__ import annotations

import pytest

from mlkube.autoscale.rightsize import (
    SamplesError,
    apply_to_yaml,
    cpu_text,
    memory_text,
    parse_samples,
    recommend,
)
from mlkube.spec import ModelDeployment, parse_documents

SPEC = """\
# a comment that must survive
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: iris   # inline comment
spec:
  model:
    uri: ./models/iris.onnx
    format: onnx
  resources:
    requests: {cpu: 500m, memory: 512Mi}
    limits: {cpu: "2", memory: 2Gi}
  autoscaling:
    minReplicas: 1
    maxReplicas: 3
    metrics:
      - {type: cpu, targetUtilization: 70}
"""


def _deployment(text: str) -> ModelDeployment:
    doc = parse_documents(text, "spec.yaml")[0]
    assert isinstance(doc, ModelDeployment)
    return doc


def _samples() -> dict[str, object]:
    return {
        "samples": [
            {"t": 60.0 * i, "cpuCores": 0.2, "memoryBytes": 300 * 2**20, "rps": 4 + (i % 5),
             "latencyP95Ms": 100 + 100 * (i % 5)}
            for i in range(600)
        ]
    }  # fmt: skip


def test_recommendation_keeps_limit_ratios_and_sizes_the_rps_target() -> None:
    samples, ooms = parse_samples(_samples(), "usage.json")
    rec = recommend(samples, ooms, deployment=_deployment(SPEC), slo_ms=400.0)
    cpu_target_milli = rec.resources.cpu.target * 1000
    assert rec.cpu_request_milli == pytest.approx(cpu_target_milli, abs=1)
    assert rec.cpu_limit_milli == 4 * rec.cpu_request_milli  # 2 / 500m
    assert rec.memory_limit_bytes == 4 * rec.memory_request_bytes  # 2Gi / 512Mi
    # p95 ≤ 400 ms up to 7 req/s per replica; the target keeps 70% of that.
    assert rec.capacity_at_slo_rps == 7
    assert rec.rps_target == pytest.approx(4.9)


def test_bounds_are_quantities_and_never_above_the_machine() -> None:
    # Five minutes of history: the VPA's upper bound is multiplied by 1 + 1/days ≈ 290.
    data = {"samples": [{"t": 60.0 * i, "cpuCores": 0.5, "memoryBytes": 300 * 2**20}
                        for i in range(5)]}  # fmt: skip
    samples, ooms = parse_samples(data, "usage.json")
    rec = recommend(samples, ooms, deployment=None, slo_ms=400.0, machine=(2.0, 8 * 2**30))
    assert rec.resources.cpu.upper > 2.0  # the raw estimate is absurd for this machine
    shown = rec.to_json()
    assert shown["cpu"]["upper"] == "2"
    assert shown["cpu"]["upperCapped"] is True
    assert shown["memory"]["upper"] == "8192Mi"
    assert shown["cpu"]["target"].endswith("m")
    assert shown["memory"]["target"].endswith("Mi")


def test_apply_rewrites_only_the_recommended_fields() -> None:
    samples, ooms = parse_samples(_samples(), "usage.json")
    rec = recommend(samples, ooms, deployment=_deployment(SPEC), slo_ms=400.0)
    out = apply_to_yaml(SPEC, rec)
    assert "# a comment that must survive" in out
    assert "name: iris   # inline comment" in out
    assert "      - {type: cpu, targetUtilization: 70}" in out
    assert f"      - {{type: rps, target: {rec.rps_target}}}" in out
    updated = _deployment(out)
    cpu = updated.spec.resources.requests.get("cpu")
    memory = updated.spec.resources.requests.get("memory")
    assert cpu is not None and memory is not None
    assert cpu.text == cpu_text(rec.cpu_request_milli)
    assert memory.text == memory_text(rec.memory_request_bytes)
    # Applying twice replaces the rps target instead of adding a second one.
    again = apply_to_yaml(out, rec)
    assert again.count("type: rps") == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"samples": []}, "non-empty list"),
        ({"samples": [{"cpuCores": 1}]}, "each needs 't'"),
        ({"samples": [{"t": 0, "cpuCores": -1}]}, "cpuCores must not be negative"),
    ],
)
def test_bad_samples_name_the_problem(data: object, message: str) -> None:
    with pytest.raises(SamplesError, match=message):
        parse_samples(data, "usage.json")


def test_a_profile_alone_gives_samples_of_its_steps_within_the_slo() -> None:
    from mlkube.autoscale.profile import LoadPoint, Profile
    from mlkube.autoscale.rightsize import samples_from_profile

    points = (
        LoadPoint(1, 50.0, 10.0, 20.0, 0.3, 120 * 2**20),
        LoadPoint(4, 150.0, 30.0, 90.0, 0.9, 130 * 2**20),
        LoadPoint(8, 160.0, 80.0, 900.0, 1.0, 140 * 2**20),
    )
    profile = Profile("m", 100.0, 1.0, 10.0, 160.0, 150.0, 0.006, 0.01, 130 * 2**20, points)
    again = Profile.from_json(profile.to_json(), "profile.json")
    assert again.points == points  # the steps survive the file (they were dropped)
    samples = samples_from_profile(again)
    assert [s.cpu_cores for s in samples] == [0.3, 0.9]  # the 900 ms step is over the SLO
