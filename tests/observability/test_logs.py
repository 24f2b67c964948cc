"""merge_log_lines: time order across replicas, stable ties, lines without a time."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from mlkube.observability.logs import line_time, merge_log_lines


def line(ts, msg="m"):
    return json.dumps({"ts": ts, "level": "info", "msg": msg})


def test_lines_merge_in_time_order():
    a = [line("2026-11-26T20:00:00.100Z", "a1"), line("2026-11-26T20:00:00.300Z", "a2")]
    b = [line("2026-11-26T20:00:00.200Z", "b1"), line("2026-11-26T20:00:00.400Z", "b2")]
    merged = [json.loads(x.text)["msg"] for x in merge_log_lines({"r0": a, "r1": b})]
    assert merged == ["a1", "b1", "a2", "b2"]


def test_a_line_without_time_stays_after_its_record():
    a = [
        line("2026-11-26T20:00:00.100Z", "boom"),
        "Traceback (most recent call last):",
        line("2026-11-26T20:00:00.500Z", "a2"),
    ]
    b = [line("2026-11-26T20:00:00.200Z", "b1")]
    merged = [(x.source, x.text) for x in merge_log_lines({"r0": a, "r1": b})]
    assert merged[0] == ("r0", a[0])
    assert merged[1] == ("r0", "Traceback (most recent call last):")
    assert merged[2] == ("r1", b[0])


def test_equal_times_keep_source_then_position_order():
    ts = "2026-11-26T20:00:00.000Z"
    merged = list(merge_log_lines({"r1": [line(ts, "x"), line(ts, "y")], "r0": [line(ts, "z")]}))
    assert [(m.source, json.loads(m.text)["msg"]) for m in merged] == [
        ("r0", "z"),
        ("r1", "x"),
        ("r1", "y"),
    ]


def test_line_time_reads_text_numbers_and_rejects_the_rest():
    assert line_time(line("2026-11-26T20:00:00.250Z")) == 1795723200.25
    assert line_time('{"msg": "x", "ts": 12.5}') == 12.5
    assert line_time('{"ts" : "12.5"}') == 12.5
    assert line_time("plain text") is None
    assert line_time('{"ts": "yesterday"}') is None
    assert line_time('{"ts": null}') is None


@given(
    st.lists(st.lists(st.integers(0, 10_000), max_size=30), min_size=1, max_size=5),
    st.randoms(use_true_random=False),
)
def test_merge_is_sorted_and_loses_nothing(streams, rng: random.Random):
    data = {f"r{i}": [line(t / 1000) for t in sorted(s)] for i, s in enumerate(streams)}
    merged = list(merge_log_lines(data))
    assert len(merged) == sum(len(s) for s in streams)
    times = [m.ts for m in merged]
    assert times == sorted(times)


def test_a_stream_slightly_out_of_order_is_sorted_within_the_skew():
    a = [line(10.0, "late record"), line(9.5, "buffered access line"), line(12.0, "next")]
    merged = [json.loads(x.text)["msg"] for x in merge_log_lines({"r0": a})]
    assert merged == ["buffered access line", "late record", "next"]
    # "a" left the window when "b" arrived: a line older than the window comes out as it is.
    far = [line(10.0, "a"), line(12.0, "b"), line(5.0, "too late to reorder")]
    assert [json.loads(x.text)["msg"] for x in merge_log_lines({"r0": far}, max_skew_s=1)] == [
        "a",
        "too late to reorder",
        "b",
    ]
