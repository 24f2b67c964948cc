"""Time a freshly loaded runtime at a few batch sizes: the cost model's first estimate.

This runs before the version is published, so it is part of the cold start (process start to
first answer). It stays there, by choice: it costs at most ``WARMUP_BUDGET_S`` (0.25 s) and,
measured by ``bench/cold_start.py``'s models, 1-50 ms (LightGBM ~1 ms, TorchScript ~10 ms,
XGBoost ~27 ms, a scikit-learn gradient-boosting model ~50 ms: a small share of their
1-3 s starts, which library imports dominate). Run after readiness instead, it would race the
first real calls for the model and leave the batcher's first merging decisions to a one-call
estimate; readiness keeps meaning "loaded, and measured".
"""

from __future__ import annotations

from mlkube.batching.cost import WARMUP_BUDGET_S, measure, repeat_rows
from mlkube.clock import Clock
from mlkube.runtimes.base import Runtime, example_batch
from mlkube.spec.model import BatchingSpec


def calibrate(
    runtime: Runtime, batching: BatchingSpec, merges: bool, clock: Clock, warm_s: float
) -> list[tuple[int, float]]:
    """Warm-up timings of ``runtime`` (``measure``): batch sizes up to the row limit when
    requests may be merged, the 1-row size alone when they may not. ``warm_s`` is the first
    warm-up call's duration: a model slower than the whole budget is not called again, nor is
    user code (format python), whose predict may count calls or have other effects: their cost
    is learnt from real calls."""
    if warm_s > WARMUP_BUDGET_S or runtime.runs_user_code:
        return [(1, warm_s)]
    example = example_batch(runtime.inputs)
    try:
        return measure(
            runtime.predict,
            lambda rows: repeat_rows(example, rows),
            max_rows=batching.max_batch_size if merges else 1,
            timer=clock.monotonic,
        )
    except Exception:  # a model that refuses zeros in bulk is still served; timed by real calls
        return [(1, warm_s)]
