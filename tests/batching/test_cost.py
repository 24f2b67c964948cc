from typing import cast

import numpy as np
import pytest

from mlkube.batching.cost import (
    WARMUP_ROWS,
    Cost,
    CostModel,
    fit,
    measure,
    repeat_rows,
)
from mlkube.batching.warmup import calibrate
from mlkube.clock import ManualClock
from mlkube.runtimes.base import Runtime
from mlkube.spec.model import BatchingSpec


def test_fit_recovers_fixed_and_per_row_cost():
    cost = fit([(1, 0.0011), (8, 0.0018), (32, 0.0042), (128, 0.0138)])
    assert cost.fixed_s == pytest.approx(0.001, abs=1e-9)
    assert cost.per_row_s == pytest.approx(0.0001, abs=1e-9)


def test_fit_of_one_size_is_all_fixed_cost():
    assert fit([(1, 0.004)]) == Cost(0.004, 0.0)
    assert fit([]) == Cost(0.0, 0.0)


def test_fit_never_goes_negative():
    assert fit([(1, 0.005), (32, 0.004)]).per_row_s == 0.0
    cost = fit([(1, 0.0), (100, 0.02)])  # a line through below zero: all per row
    assert cost.fixed_s >= 0.0 and cost.per_row_s > 0.0


def test_the_model_follows_real_calls_and_keeps_its_slope():
    model = CostModel([(1, 0.004), (32, 0.004), (128, 0.004)])
    assert model.cost == Cost(0.004, 0.0)
    # The model got slower: every real call is 1 row at 8 ms. The estimate moves there,
    # and the slope is still known from the other sizes (it does not collapse).
    for _ in range(200):
        model.observe(1, 0.008)
    assert model.cost.of(1) == pytest.approx(0.008, rel=0.1)
    assert model.cost.per_row_s == 0.0  # larger batches are not slower: never a negative slope
    fresh = CostModel([(1, 0.001), (128, 0.001)])
    for _ in range(200):
        fresh.observe(128, 0.0138)
    assert fresh.cost.per_row_s == pytest.approx(0.0001, rel=0.05)


def test_measure_times_each_size_up_to_the_row_limit():
    clock = ManualClock()
    seen: list[int] = []

    def predict(batch):
        rows = batch["x"].shape[0]
        seen.append(rows)
        clock.advance(0.001 + 0.0001 * rows)
        return batch

    samples = measure(
        predict,
        lambda rows: repeat_rows({"x": np.zeros((1, 3))}, rows),
        max_rows=32,
        timer=clock.monotonic,
    )
    assert [rows for rows, _ in samples] == [r for r in WARMUP_ROWS if r <= 32]
    assert fit(samples).fixed_s == pytest.approx(0.001)
    assert fit(samples).per_row_s == pytest.approx(0.0001)
    assert set(seen) == {1, 8, 32}


def test_measure_stops_at_its_budget_for_a_slow_model():
    clock = ManualClock()

    def predict(batch):
        clock.advance(0.2)
        return batch

    samples = measure(
        predict,
        lambda rows: repeat_rows({"x": np.zeros((1, 3))}, rows),
        max_rows=1024,
        timer=clock.monotonic,
        budget_s=0.25,
    )
    assert [rows for rows, _ in samples] == [1]


class _UserCode:
    """A format-python model: its predict may count calls (a test's trace, a model that
    allocates on its second call), so the warm-up must call it once only."""

    runs_user_code = True
    inputs = ()

    def predict(self, batch: object) -> object:
        raise AssertionError("calibrate called user code again")


def test_user_code_is_not_called_again_at_warm_up():
    runtime = cast(Runtime, _UserCode())
    assert calibrate(runtime, BatchingSpec(), True, ManualClock(), 0.002) == [(1, 0.002)]
