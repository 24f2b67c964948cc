"""bench/serve.py's pure parts: wrk's summary, pacing, the arms' order, tables and targets."""

import pytest

# What wrk 4.x prints with the script's done() hook (summary line last).
WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1/v1/models/m:predict
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    17.28ms   24.42ms 142.48ms   88.53%
  19615 requests in 3.03s, 4.21MB read
  Socket errors: connect 0, read 2, write 0, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:   6476.45
bench-summary 19615 3030000 7 0 2 0 0 907.0 66899.0 95929.0 142480.0
"""


def test_the_summary_line_gives_rates_percentiles_and_errors(serve):
    result = serve.parse_wrk(WRK_OUTPUT)
    assert result["requests_per_s"] == pytest.approx(19615 / 3.03)
    assert (result["p50_ms"], result["p99_ms"], result["p999_ms"]) == (0.907, 66.899, 95.929)
    assert result["max_ms"] == 142.48
    assert result["non_2xx"] == 7
    assert result["connect_read_write_errors"] == 2
    assert result["socket_errors"] == "connect 0, read 2, write 0, timeout 0"


def test_a_run_without_the_summary_line_is_an_error_not_zeros(serve):
    with pytest.raises(RuntimeError, match="no summary"):
        serve.parse_wrk("Running 2s test\nRequests/sec: 10\n")


def test_the_script_reads_the_body_as_bytes_and_paces_only_when_asked(serve, tmp_path):
    body = tmp_path / "body"
    plain = serve.wrk_script(body, {"Content-Type": "application/json"}, None)
    assert f'io.open("{body}", "rb")' in plain
    assert 'wrk.headers["Content-Type"] = "application/json"' in plain
    assert "done = function" in plain and "delay" not in plain
    paced = serve.wrk_script(body, {}, 12.5)
    assert "local mean = 12.5000" in paced and "delay = function" in paced


def test_every_arm_takes_every_position_over_as_many_rounds(serve):
    arms = ["baseline", "mlkube", "batcher"]
    orders = [serve.rotated(arms, i) for i in range(3)]
    assert orders[0] == arms
    for position in range(3):
        assert {order[position] for order in orders} == set(arms)
    assert serve.rotated(["baseline", "mlkube"], 1) == ["mlkube", "baseline"]
    assert serve.rotated([], 2) == []  # a setting none of the chosen arms runs at


def test_pacing_aims_at_half_the_saturated_rate(serve):
    plan = serve.pace(saturated_rps=20_000, service_ms=0.5, most_connections=64)
    assert plan["target_rps"] == 10_000
    assert plan["connections"] == 64
    # 64 connections at 10,000 req/s: one request per 6.4 ms each, 0.5 of it answering.
    assert plan["delay_ms"] == pytest.approx(5.9)
    slow = serve.pace(saturated_rps=40, service_ms=25, most_connections=64)
    assert slow["connections"] == 2  # ~10 req/s each: wrk's opening burst stays small
    assert slow["delay_ms"] == pytest.approx(2 * 1000 / 20 - 25)


def test_a_trial_run_sets_the_think_time_from_the_answer_time_it_shows(serve):
    plan = serve.pace(saturated_rps=20_000, service_ms=0.5, most_connections=64)
    # The trial reached 6,400 req/s: 10 ms a cycle, 5.9 of them thinking, so answers took 4.1.
    again = serve.repace(plan, reached_rps=6_400)
    assert again["delay_ms"] == pytest.approx(6.4 - 4.1)
    assert serve.repace(plan, reached_rps=0) == plan
    # Answers slower than the target's cycle: no think time at all, never a negative one.
    assert serve.repace(plan, reached_rps=1_000)["delay_ms"] == 0.0


def _run(rows, connections, rps, p50, p99, **extra):
    return {
        "rows": rows,
        "connections": connections,
        "requests_per_s": rps,
        "rows_per_s": rps * rows,
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p99 * 2,
        "non_2xx": 0,
        **extra,
    }


def _entry(scale, p99_factor=2.0):
    runs = [
        _run(rows, conns, scale * (10 if conns > 1 else 1), 1.0, p99_factor)
        for rows in (1, 32)
        for conns in (1, 64)
    ]
    return {
        "cold_start_s": 1.0,
        "idle_pss_mib": {"1": 10.0, "2": 50.0, "3": 50.0},
        "loaded_pss_mib": {"1": 10.0, "2": 60.0, "3": 60.0},
        "runs": runs,
    }


def _results():
    mlkube = _entry(300.0, p99_factor=4.0)
    baseline = _entry(100.0)
    batcher = _entry(150.0)
    baseline["paced"] = [{**_run(32, 20, 500.0, 0.5, 1.0), "load": 0.5}]
    return {
        "baseline": {"onnx": baseline},
        "mlkube": {"onnx": mlkube},
        "batcher": {"onnx": batcher},
        "binary": {"onnx": {"runs": [_run(32, 64, 12_000.0, 2.0, 3.0)]}},
    }


def test_the_tables_put_every_arm_of_a_setting_side_by_side(serve):
    results = _results()
    table = serve.summarise(results, workers=2)
    assert len(table) == 4
    row = next(r for r in table if (r["rows"], r["connections"]) == (32, 64))
    assert (row["mlkube_rps"], row["baseline_rps"], row["batcher_rps"]) == (3000, 1000, 1500)
    assert row["ratio_rps"] == 3.0 and row["core_ratio_rps"] == 2.0
    assert results["mlkube"]["onnx"]["loaded_pss_per_worker_mib"] == 60.0
    tail = serve.tail_table(results)
    half = next(r for r in tail if r["rows"] == 32)
    assert half["baseline_half_p50_ms"] == 0.5 and half["baseline_half_load"] == 0.5
    assert half["mlkube_half_p50_ms"] is None  # not paced in this report: missing, not zero
    (binary,) = serve.binary_table(results)
    assert binary["binary_rows_per_s"] == 12_000 * 32
    assert binary["ratio_vs_baseline_json"] == pytest.approx(12_000 / 1000)
    assert binary["ratio_vs_mlkube_json"] == pytest.approx(4.0)


def test_the_targets_hold_issue_18s_and_issue_16s(serve):
    results = _results()
    table = serve.summarise(results, workers=2)
    paired = {
        "onnx": {
            "1": {
                "difference_ms": {
                    "mlkube": {"median": 0.02, "low": 0.01, "high": 0.03},
                    "batcher": {"median": 0.05, "low": 0.04, "high": 0.06},
                }
            }
        }
    }
    found = serve.targets(table, results, serve.binary_table(results), paired)
    assert found["onnx_32row_64c_rows_ratio (target >= 2.0)"] == 3.0
    # The 1-connection differences are the paired ones, not the wrk medians' (equal here).
    assert found["onnx_1row_p50_1c_paired_delta_ms (target <= 0.1)"] == 0.02
    assert found["onnx_1row_p50_1c_paired_delta_ms (issue 16 target <= 0.05)"] == 0.02
    assert found["onnx_1row_p50_1c_core_delta_ms (mlkube - starlette+batcher, target <= 0)"] == (
        pytest.approx(-0.03)
    )
    assert found["onnx_1row_p50_1c_paired_delta_ms upper 95% bound"] == 0.03
    assert "onnx_32row_p50_1c_paired_delta_ms (target <= 0.1)" not in found  # not measured
    assert found["onnx_binary_32row_64c_rows_ratio (vs bare JSON, target >= 4.0)"] == 12.0
    assert found["onnx_1row_64c_core_ratio (mlkube / starlette+batcher, target > 1.0)"] == 2.0
    assert found["onnx_32row_64c_mlkube_p99_over_p50 (target <= 3.0)"] == 4.0


def test_targets_an_arm_did_not_run_are_left_out(serve):
    results = _results()
    del results["batcher"], results["binary"]
    table = serve.summarise(results, workers=2)
    found = serve.targets(table, results, serve.binary_table(results))
    assert not [key for key in found if "core" in key or "binary" in key]
    assert "onnx_1row_64c_ratio (target >= 1.3)" in found
