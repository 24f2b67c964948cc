"""Alert rules: structure, thresholds from the spec, ``promtool check rules`` and
``promtool test rules`` for every alert on synthetic series (fires, and stays silent)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.observability import alerts
from mlkube.observability.catalogue import base_name
from mlkube.observability.promql import metric_names
from mlkube.spec.observability import ALERT_NAMES

from .conftest import deployment, tool

FULL = {
    "resources": {"limits": {"memory": "2Gi"}},
    "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
    "monitoring": {
        "alerts": {
            "p99LatencyMs": 250,
            "errorRate": 0.02,
            "expectTraffic": True,
            "noTrafficFor": "2m",
            "forDuration": "1m",
            "window": "2m",
            "maxReplicasFor": "2m",
            "crashLoopWindow": "5m",
            "crashLoopRestarts": 3,
            "labels": {"team": "ml"},
        }
    },
}


def full_rules() -> list[dict[str, Any]]:
    return alerts.alert_rules(deployment(FULL))


# structure ---------------------------------------------------------------------------------
def test_every_alert_is_generated_once_with_severity_summary_description_runbook():
    rules = full_rules()
    assert [r["alert"] for r in rules] == list(ALERT_NAMES)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["labels"]["team"] == "ml"
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())


def test_every_expression_names_only_catalogue_metrics():
    for rule in full_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert {n for n in names if base_name(n) is None} == set(), rule["alert"]


def test_thresholds_come_from_the_spec():
    rules = {r["alert"]: r for r in full_rules()}
    assert rules["MlkubeHighErrorRate"]["expr"].endswith("> 0.02")
    assert rules["MlkubeHighLatencyP99"]["expr"].endswith("> 0.25")
    assert ">= 3" in rules["MlkubeReplicasAtMax"]["expr"]
    assert "/ 2147483648 > 0.9" in rules["MlkubeMemoryNearLimit"]["expr"]
    assert rules["MlkubeHighErrorRate"]["for"] == "1m"
    assert rules["MlkubeReplicasAtMax"]["for"] == "2m"


def test_rules_that_need_a_setting_are_left_out_without_it():
    names = [r["alert"] for r in alerts.alert_rules(deployment())]
    assert "MlkubeReplicasAtMax" not in names  # no autoscaling
    assert "MlkubeMemoryNearLimit" not in names  # no memory limit
    assert "MlkubeNoTraffic" not in names  # expectTraffic is false by default
    assert "MlkubeHighErrorRate" in names


def test_disabled_alerts_and_disabled_monitoring():
    spec = {"monitoring": {"alerts": {"disabled": ["MlkubeHighLatencyP99"]}}}
    assert "MlkubeHighLatencyP99" not in [r["alert"] for r in alerts.alert_rules(deployment(spec))]
    assert alerts.alert_rules(deployment({"monitoring": {"enabled": False}})) == []


def test_an_unknown_disabled_alert_is_a_spec_error():
    from mlkube.errors import SpecError

    with pytest.raises(SpecError, match="unknown alert 'Nope'"):
        deployment({"monitoring": {"alerts": {"disabled": ["Nope"]}}})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (90, "90s"), (3600, "1h"), (1.5, "1500ms"), (0, "0ms"), (5400, "90m")],
)
def test_duration(seconds, text):
    assert alerts.duration(seconds) == text


def test_rule_file_has_one_group_per_deployment():
    a, b = deployment(), deployment(name="other")
    groups = alerts.rule_file([a, b])["groups"]
    assert [g["name"] for g in groups] == ["mlkube.ml.iris", "mlkube.ml.other"]


def test_every_alert_has_a_runbook_section():
    text = (Path(__file__).parents[2] / "docs" / "alerts.md").read_text()
    for name in ALERT_NAMES:
        assert f"\n## {name}\n" in text, name


# promtool ------------------------------------------------------------------------------------
def write_rules(path: Path, rules: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": rules}]}, sort_keys=False))
    return path


@pytest.mark.integration  # runs a Prometheus tool
@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(None, id="defaults"),
        pytest.param(FULL, id="every-alert"),
        pytest.param({"monitoring": {"alerts": {"errorRate": 0, "p99LatencyMs": 0.5}}}, id="edges"),
    ],
)
def test_promtool_check_rules_accepts_every_generated_file(tmp_path, spec):
    promtool = tool("promtool")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(alerts.rule_file([deployment(spec)])))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


BASE = {"namespace": "ml", "deployment": "iris", "job": "mlkube", "model": "iris"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    merged = {**BASE, "replica": "iris-0", "revision": "1", "instance": "127.0.0.1:9000"}
    merged.update(labels)
    text = ",".join(f'{k}="{v}"' for k, v in merged.items() if v)  # "" means: no such label
    return {"series": f"{name}{{{text}}}", "values": values}


def requests(values: str, code: str = "200", **labels: str) -> dict[str, str]:
    return series("mlkube_requests_total", values, protocol="v1", code=code, **labels)


def buckets(counts: dict[str, str], **labels: str) -> list[dict[str, str]]:
    name = "mlkube_request_duration_seconds_bucket"
    return [series(name, v, protocol="v1", le=le, **labels) for le, v in counts.items()]


def dep_labels(**extra: str) -> dict[str, str]:
    return {"namespace": "ml", "deployment": "iris", "severity": "warning", "team": "ml", **extra}


def replica_labels(severity: str, **extra: str) -> dict[str, str]:
    return {
        **BASE,
        "replica": "iris-0",
        "revision": "1",
        "instance": "127.0.0.1:9000",
        "severity": severity,
        "team": "ml",
        **extra,
    }


FAST = {"0.1": "0+10x60", "0.25": "0+10x60", "0.5": "0+10x60", "+Inf": "0+10x60"}
SLOW = {"0.1": "0x60", "0.25": "0x60", "0.5": "0+10x60", "+Inf": "0+10x60"}

# (alert, id, input series, expected alerts' labels) — every alert fires once and stays silent
# once; evaluated at 10m, with 15s between samples.
CASES: list[tuple[str, str, list[dict[str, str]], list[dict[str, str]]]] = [
    (
        "MlkubeHighErrorRate",
        "fires-at-9pct",
        [requests("0+60x60"), requests("0+6x60", code="500")],
        [dep_labels(severity="critical")],
    ),
    (
        "MlkubeHighErrorRate",
        "silent-below-2pct",
        [requests("0+60x60"), requests("0+0.6x60", code="500")],
        [],
    ),
    (
        "MlkubeHighErrorRate",
        "silent-with-4xx",
        [requests("0+60x60"), requests("0+30x60", code="400")],
        [],
    ),
    ("MlkubeHighLatencyP99", "fires-above-slo", buckets(SLOW), [dep_labels()]),
    ("MlkubeHighLatencyP99", "silent-under-slo", buckets(FAST), []),
    (
        "MlkubeReplicasAtMax",
        "fires-with-3-replicas",
        [series("mlkube_model_ready", "1x60", replica=f"iris-{i}") for i in range(3)],
        [dep_labels()],
    ),
    (
        "MlkubeReplicasAtMax",
        "fires-on-controller-desired",
        [series("mlkube_deployment_desired_replicas", "3x60", replica="", revision="")],
        [dep_labels()],
    ),
    (
        "MlkubeReplicasAtMax",
        "silent-with-2-replicas",
        [series("mlkube_model_ready", "1x60", replica=f"iris-{i}") for i in range(2)],
        [],
    ),
    (
        "MlkubeCrashLooping",
        "fires-on-process-restarts",
        [series("process_start_time_seconds", "100+100x60")],
        [replica_labels("critical")],
    ),
    (
        "MlkubeCrashLooping",
        "fires-on-controller-restarts",
        [
            series(
                "mlkube_replica_restarts_total", "0+1x60", replica="", revision="", reason="Error"
            )
        ],
        [
            {
                k: v
                for k, v in replica_labels("critical", reason="Error").items()
                if k not in ("replica", "revision")
            }
        ],
    ),
    (
        "MlkubeCrashLooping",
        "silent-when-stable",
        [series("process_start_time_seconds", "100x60")],
        [],
    ),
    (
        "MlkubeMemoryNearLimit",
        "fires-at-95pct",
        [series("process_resident_memory_bytes", str(int(0.95 * 2**31)) + "x60")],
        [replica_labels("warning")],
    ),
    (
        "MlkubeMemoryNearLimit",
        "silent-at-50pct",
        [series("process_resident_memory_bytes", str(2**30) + "x60")],
        [],
    ),
    (
        "MlkubeModelNotReady",
        "fires-when-0",
        [series("mlkube_model_ready", "0x60")],
        [replica_labels("critical")],
    ),
    ("MlkubeModelNotReady", "silent-when-ready", [series("mlkube_model_ready", "1x60")], []),
    (
        "MlkubeModelNotReady",
        "silent-when-it-recovers-within-for",
        [series("mlkube_model_ready", "1x37 0x2 1x20")],
        [],
    ),
    (
        "MlkubeNoTraffic",
        "fires-when-flat",
        [series("mlkube_batch_requests_sum", "5x60")],
        [dep_labels()],
    ),
    (
        "MlkubeNoTraffic",
        "fires-when-absent",
        [series("mlkube_model_ready", "1x60")],
        [dep_labels()],
    ),
    (
        "MlkubeNoTraffic",
        "silent-with-traffic",
        [series("mlkube_batch_requests_sum", "0+10x60")],
        [],
    ),
    (
        "MlkubeCanaryErrorRateWorse",
        "fires-for-the-failing-revision",
        [
            requests("0+60x60"),
            requests("0+54x60", revision="2"),
            requests("0+6x60", code="503", revision="2"),
        ],
        [dep_labels(revision="2")],
    ),
    (
        "MlkubeCanaryErrorRateWorse",
        "silent-when-equal",
        [
            requests("0+54x60"),
            requests("0+6x60", code="500"),
            requests("0+54x60", revision="2"),
            requests("0+6x60", code="500", revision="2"),
        ],
        [],
    ),
    (
        "MlkubeCanaryErrorRateWorse",
        "silent-with-one-revision",
        [requests("0+54x60"), requests("0+6x60", code="500")],
        [],
    ),
    (
        "MlkubeCanaryLatencyWorse",
        "fires-for-the-slow-revision",
        [*buckets(FAST), *buckets(SLOW, revision="2")],
        [dep_labels(revision="2")],
    ),
    (
        "MlkubeCanaryLatencyWorse",
        "silent-when-equal",
        [*buckets(FAST), *buckets(FAST, revision="2")],
        [],
    ),
]


def test_every_alert_has_a_firing_and_a_silent_case():
    fired = {c[0] for c in CASES if c[3]}
    silent = {c[0] for c in CASES if not c[3]}
    assert fired == silent == set(ALERT_NAMES)


def unit_test(case: tuple[str, str, list[dict[str, str]], list[dict[str, str]]]) -> dict[str, Any]:
    alert, _, input_series, expected = case
    return {
        "interval": "15s",
        "input_series": input_series,
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": alert,
                "exp_alerts": [{"exp_labels": labels} for labels in expected],
            }
        ],
    }


def run_promtool_test(
    tmp_path: Path, rules: list[dict[str, Any]], tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    promtool = tool("promtool")
    write_rules(tmp_path / "rules.yml", rules)
    test_file = tmp_path / "tests.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "tests": tests}))
    return subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.integration  # runs a Prometheus tool
def test_promtool_unit_tests_every_alert(tmp_path):
    # promtool compares annotations exactly, and ours quote $value; the labels and the
    # firing are what these cases check (annotations are checked in the next test).
    rules = [{k: v for k, v in r.items() if k != "annotations"} for r in full_rules()]
    result = run_promtool_test(tmp_path, rules, [unit_test(c) for c in CASES])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration  # runs a Prometheus tool
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_case_would_fail_if_its_expectation_were_wrong(tmp_path, case):
    """The inverse expectation must fail: a case that passes either way tests nothing."""
    alert, name, input_series, expected = case
    flipped = [] if expected else [dep_labels()]
    rules = [{k: v for k, v in r.items() if k != "annotations"} for r in full_rules()]
    result = run_promtool_test(tmp_path, rules, [unit_test((alert, name, input_series, flipped))])
    assert result.returncode != 0, result.stdout


@pytest.mark.integration  # runs a Prometheus tool
def test_annotations_expand_with_labels_and_value(tmp_path):
    rule = next(r for r in full_rules() if r["alert"] == "MlkubeModelNotReady")
    test = unit_test(next(c for c in CASES if c[:2] == ("MlkubeModelNotReady", "fires-when-0")))
    test["alert_rule_test"][0]["exp_alerts"][0]["exp_annotations"] = {
        "summary": "iris: model not ready on iris-0",
        "description": "Replica iris-0 of ml/iris has not been ready to serve for 1m.",
        "runbook_url": "https://github.com/mlkube/mlkube/blob/main/docs/alerts.md"
        "#mlkubemodelnotready",
    }
    result = run_promtool_test(tmp_path, [rule], [test])
    assert result.returncode == 0, result.stdout + result.stderr
