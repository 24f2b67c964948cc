"""The usage-sample and OOM tables behind ``mlkube recommend NAME``."""

from __future__ import annotations

import sqlite3

import pytest

import mlkube.backends.local.store as module
from mlkube.backends.local.store import OomRow, Store, UsageRow

DAY = 86400.0


def _row(ts: float, replica: str = "r1", cpu: float | None = 0.2) -> UsageRow:
    return UsageRow(replica, ts, cpu, 100 * 2**20, 0.5, 3.0, 12.5)


def test_samples_round_trip_and_survive_reopening(tmp_path):
    store = Store(tmp_path / "state.db")
    rows = [_row(10.0), _row(10.0, "r2", None), _row(15.0)]
    store.add_usage("ns/a", rows, now=15.0)
    store.add_usage("ns/b", [_row(12.0, "other")], now=15.0)
    store.close()
    again = Store(tmp_path / "state.db")
    assert again.usage("ns/a") == rows
    assert again.usage("ns/a", since=12.0) == [rows[2]]
    assert [r.replica for r in again.usage("ns/b")] == ["other"]


def test_samples_older_than_the_history_window_are_dropped(tmp_path):
    store = Store(tmp_path / "state.db")
    store.add_usage("k", [_row(0.0), _row(DAY)], now=DAY)
    store.add_usage("k", [_row(9 * DAY)], now=9 * DAY)
    assert [r.ts for r in store.usage("k")] == [DAY, 9 * DAY]
    store.add_usage("k", [_row(9.5 * DAY)], now=9.5 * DAY)
    assert [r.ts for r in store.usage("k")] == [9 * DAY, 9.5 * DAY]


def test_row_cap_applies_per_deployment_and_to_stale_deployments(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "USAGE_ROWS_KEPT", 5)
    monkeypatch.setattr(module, "USAGE_PRUNE_EVERY", 4)
    store = Store(tmp_path / "state.db")
    store.add_usage("gone", [_row(1.0)], now=1.0)  # never written again
    for i in range(11):  # calls 2..12: the cap is enforced on calls 4, 8 and 12
        store.add_usage("k", [_row(100.0 + i)], now=100.0 + i)
    assert [r.ts for r in store.usage("k")] == [106.0, 107.0, 108.0, 109.0, 110.0]
    store.add_usage("k", [_row(111.0)], now=111.0)  # between prunes: cap + at most 3 rows
    assert len(store.usage("k")) == 6
    assert len(store.usage("gone")) == 1  # within the age bound, under the cap
    later = 1.0 + module.USAGE_MAX_AGE_S + 1
    for i in range(4):
        store.add_usage("k", [_row(later + i)], now=later + i)
    assert store.usage("gone") == []


def test_usage_query_uses_the_index(tmp_path):
    store = Store(tmp_path / "state.db")
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM usage_samples WHERE key = ? AND ts >= ?", ("k", 0.0)
    ).fetchall()
    db.close()
    assert any("usage_samples_key_ts" in str(step) for step in plan), plan


def test_an_oom_kill_is_recorded_once(tmp_path):
    store = Store(tmp_path / "state.db")
    kill = OomRow("r1", 1, 50.0, 300 * 2**20, 256 * 2**20)
    assert store.add_oom("k", kill) is True
    assert store.add_oom("k", kill) is False  # the same kill seen on a later tick
    assert store.add_oom("k", OomRow("r1", 2, 60.0, 310 * 2**20, None)) is True
    assert [o.restart for o in store.ooms("k")] == [1, 2]
    assert store.ooms("k", since=55.0)[0].memory_request_bytes is None
    store.delete_usage("k")
    assert store.ooms("k") == []


def test_existing_tables_are_untouched(tmp_path):
    store = Store(tmp_path / "state.db")
    store.add_usage("ns/a", [_row(1.0)], now=1.0)
    store.put_deployment("ns/a", {"desired": 1})
    store.delete_deployment("ns/a")
    assert store.deployments() == {}
    assert len(store.usage("ns/a")) == 1  # history goes with `down`, via delete_usage


@pytest.mark.parametrize("cpu", [None, 0.0, 1.5])
def test_optional_cpu_is_kept_as_given(tmp_path, cpu):
    store = Store(tmp_path / "state.db")
    store.add_usage("k", [_row(1.0, cpu=cpu)], now=1.0)
    assert store.usage("k")[0].cpu_cores == cpu
