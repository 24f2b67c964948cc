"""The simulate / recommend / profile commands as a user runs them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlkube.cli import cli
from mlkube.testing import models

GUIDE = Path(__file__).parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml"


def test_simulate_prints_policies_side_by_side_and_writes_plots(tmp_path: Path) -> None:
    png, page = tmp_path / "spike.png", tmp_path / "spike.html"
    result = CliRunner().invoke(
        cli, ["simulate", str(GUIDE), "--trace", "spike", "--plot", str(png), "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert "mlkube" in result.output
    assert "hpa-cpu70" in result.output
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in page.read_text()
    # The capacity is a built-in guess unless measured: the output says so and what to do.
    assert "(built-in replica model)" in result.output
    assert "a built-in default, not your model" in result.output
    assert f"measure yours: mlkube profile {GUIDE} --out profile.json" in result.output
    table = result.output[result.output.index("policy") :].splitlines()
    assert all(len(line) <= 80 for line in table), table
    # Plots are ordinary files, not 0600 temporaries.
    umask = os.umask(0)
    os.umask(umask)
    assert png.stat().st_mode & 0o777 == 0o666 & ~umask


def test_simulate_json_with_a_trace_file_and_overrides(tmp_path: Path) -> None:
    trace = tmp_path / "load.csv"
    trace.write_text("seconds,rps\n0,5\n60,60\n120,5\n180,0\n")
    result = CliRunner().invoke(
        cli,
        ["simulate", str(GUIDE), "--trace", str(trace), "--policy", "spec", "--capacity-rps", "30",
         "--startup", "3", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"]["capacity_rps"] == 30
    assert data["capacitySource"] == "from --capacity-rps"
    assert data["model"]["startup_s"] == 3
    (only,) = data["results"]
    assert only["policy"] == "spec"
    assert len(only["timeline"]["replicas"]) == 181
    assert only["replicaSeconds"] == sum(only["timeline"]["replicas"])


def test_simulate_rejects_an_unknown_trace_and_policy() -> None:
    result = CliRunner().invoke(cli, ["simulate", str(GUIDE), "--trace", "nope"])
    assert result.exit_code != 0
    assert "neither a built-in trace" in str(result.exception)
    result = CliRunner().invoke(cli, ["simulate", str(GUIDE), "--policy", "magic"])
    assert "unknown policy 'magic'" in str(result.exception)


def test_recommend_apply_updates_the_spec(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(GUIDE.read_text())
    samples = tmp_path / "usage.json"
    rows = [{"t": 60.0 * i, "cpuCores": 0.12, "memoryBytes": 200 * 2**20} for i in range(300)]
    samples.write_text(json.dumps({"samples": rows}))
    result = CliRunner().invoke(
        cli, ["recommend", str(spec), "--samples", str(samples), "--apply", "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    text = spec.read_text()
    assert "requests: {cpu: 500m" not in text
    assert "nodePort: 30050" in text  # the rest of the file is untouched
    assert text.startswith("# The objects of the")


@pytest.mark.integration
def test_profile_measures_a_real_replica(tmp_path: Path) -> None:
    spec = models.write_spec(models.save_onnx(models.iris_classifier(), tmp_path, "iris"))
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(
        cli,
        ["profile", str(spec), "--out", str(out), "--step-seconds", "1", "--max-concurrency", "4",
         "--timeout", "60"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["startupSeconds"] > 0
    assert data["capacityRps"] > 0
    assert [p["concurrency"] for p in data["points"]] == [1, 2, 4]
    assert all(p["p95Ms"] >= p["p50Ms"] > 0 for p in data["points"])
    assert data["memoryBytes"] > 10 * 2**20
    sim = CliRunner().invoke(
        cli, ["simulate", str(spec), "--profile", str(out), "--trace", "step", "-o", "json"]
    )
    assert sim.exit_code == 0, sim.output
    assert json.loads(sim.output)["model"]["capacity_rps"] == pytest.approx(data["capacityRps"])
    assert sys.executable  # the profiler started this interpreter's mlkube serve
    # A fresh profile is enough for a recommendation (it needed --samples before).
    rec = CliRunner().invoke(cli, ["recommend", str(spec), "--profile", str(out), "-o", "json"])
    assert rec.exit_code == 0, rec.output
    recommended = json.loads(rec.output)
    assert recommended["samples"] >= 1
    assert recommended["requests"]["cpu"]
    assert recommended["autoscaling"]["target"] > 0
