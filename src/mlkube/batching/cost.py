"""What one predict call costs as a function of its rows: ``fixed_s + per_row_s * rows``.

Pure apart from ``measure``, which calls the model it is given (``warmup`` gives it the
runtime and the clock). The estimate starts from a few timed calls
at warm-up (``measure``: 1 row and a few larger batches) and follows the real calls after that:
each size class of batch (powers of two) keeps a moving average (EWMA) of its rows and
seconds, and the line is a least-squares fit through those classes, each weighted by how many
calls it has seen (up to ``MAX_WEIGHT``), so the sizes traffic actually uses dominate. The
warm-up classes are only replaced by fresher calls of the same class, so the slope never
collapses when traffic settles on one batch size (a regression over recent calls alone would
then know nothing about the per-row cost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlkube.runtimes.base import Batch

# Weight of the newest call in its size class's moving average.
EWMA_WEIGHT = 0.2
# A size class counts at most this many calls in the fit (warm-up classes count one).
MAX_WEIGHT = 32
# Refit the line after this many calls (the fit is a small loop; once per call would cost
# about a tenth of a 40 µs predict call; measured: every 8th call still cost ~1 µs a request).
REFIT_EVERY = 32
# Batch sizes timed at warm-up (capped by the batch row limit).
WARMUP_ROWS = (1, 8, 32, 128)
# Timed calls per size at warm-up; the fastest counts (the first call of a size may allocate).
WARMUP_REPEATS = 3
# Warm-up timing stops once it has spent this long (a slow model is timed at fewer sizes).
WARMUP_BUDGET_S = 0.25


@dataclass(frozen=True, slots=True)
class Cost:
    """A predict call's estimated duration: a fixed part and a part per row."""

    fixed_s: float
    per_row_s: float

    def of(self, rows: int) -> float:
        return self.fixed_s + self.per_row_s * rows


def fit(samples: Sequence[tuple[float, float]], weights: Sequence[float] = ()) -> Cost:
    """Least-squares line through ``(rows, seconds)`` points, both parts clamped at 0.

    ``weights`` (default: all 1) weigh the points. One distinct size (or none) gives no
    slope: all of the cost is then taken as fixed, the cautious reading (it makes merging
    look worthwhile and waiting bounded by the call).
    """
    if not samples:
        return Cost(0.0, 0.0)
    w = list(weights) or [1.0] * len(samples)
    total = sum(w)
    mean_x = sum(wi * x for wi, (x, _) in zip(w, samples, strict=True)) / total
    mean_y = sum(wi * y for wi, (_, y) in zip(w, samples, strict=True)) / total
    spread = sum(wi * (x - mean_x) ** 2 for wi, (x, _) in zip(w, samples, strict=True))
    if spread <= 1e-12:
        return Cost(max(mean_y, 0.0), 0.0)
    slope = (
        sum(wi * (x - mean_x) * (y - mean_y) for wi, (x, y) in zip(w, samples, strict=True))
        / spread
    )
    slope = max(slope, 0.0)
    fixed = mean_y - slope * mean_x
    if fixed < 0.0:  # the line crosses zero: the calls are all per-row cost
        return Cost(0.0, mean_y / mean_x if mean_x > 0 else 0.0)
    return Cost(fixed, slope)


class CostModel:
    """The running estimate of one model's predict cost."""

    def __init__(self, samples: Sequence[tuple[int, float]] = ()) -> None:
        self._classes: dict[int, tuple[float, float]] = {}
        self._weights: dict[int, float] = {}
        self._since_fit = 0
        self.cost = Cost(0.0, 0.0)
        for rows, seconds in samples:
            self._classes[_size_class(rows)] = (float(rows), seconds)
            self._weights[_size_class(rows)] = 1.0
        self._refit()

    @property
    def known(self) -> bool:
        """Whether anything has been measured yet."""
        return bool(self._classes)

    def observe(self, rows: int, seconds: float) -> None:
        """Fold one real call into its size class; the line is refitted now and then."""
        key = _size_class(rows)
        previous = self._classes.get(key)
        if previous is None:
            self._classes[key] = (float(rows), seconds)
            self._weights[key] = 1.0
            self._refit()
            return
        self._weights[key] = min(self._weights[key] + 1.0, MAX_WEIGHT)
        old_rows, old_seconds = previous
        self._classes[key] = (
            old_rows + EWMA_WEIGHT * (rows - old_rows),
            old_seconds + EWMA_WEIGHT * (seconds - old_seconds),
        )
        self._since_fit += 1
        if self._since_fit >= REFIT_EVERY:
            self._refit()

    def _refit(self) -> None:
        self._since_fit = 0
        keys = list(self._classes)
        self.cost = fit([self._classes[k] for k in keys], [self._weights[k] for k in keys])


def _size_class(rows: int) -> int:
    return max(rows, 1).bit_length()


def measure(
    predict: Callable[[Batch], object],
    example: Callable[[int], Batch],
    *,
    max_rows: int,
    timer: Callable[[], float],
    budget_s: float = WARMUP_BUDGET_S,
) -> list[tuple[int, float]]:
    """Time ``predict`` on batches of a few sizes: ``(rows, fastest seconds)`` per size.

    ``example(rows)`` builds a valid batch of that many rows. Sizes above ``max_rows`` are
    skipped, and so is everything after the time spent passes ``budget_s``; the 1-row size is
    always measured.
    """
    samples: list[tuple[int, float]] = []
    started = timer()
    for rows in WARMUP_ROWS:
        if rows > max_rows or (samples and timer() - started > budget_s):
            break
        batch = example(rows)
        best = float("inf")
        for _ in range(WARMUP_REPEATS):
            before = timer()
            predict(batch)
            best = min(best, timer() - before)
            if timer() - started > budget_s:
                break
        samples.append((rows, best))
    return samples


def repeat_rows(batch: Batch, rows: int) -> Batch:
    """``batch`` (of one row) repeated to ``rows`` rows along the batch axis."""
    return {name: np.repeat(array[:1], rows, axis=0) for name, array in batch.items()}
