"""Predict several requests as one batch without letting one request fail the others.

A merged batch fails as a whole when any one of its requests trips the model (a value the
model cannot handle, a row that makes user code raise). ``predict_apart`` then bisects: each
half is predicted again, down to single requests, so only a request that fails on its own
gets an error, and the error it gets is its own. With k failing requests among n, that costs
about 2·k·log2(n/k) extra calls (2n−1 calls in all when every request fails, e.g. a model
that is broken for any input), and none when nothing fails.

Pure apart from calling ``predict``: no clock, no event loop; the batcher runs it inline or in
its predict thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mlkube.batching.assembly import merge_batches, rows_of, split_outputs
from mlkube.runtimes.base import Batch

Outcome = Batch | Exception
"""One request's rows of the outputs, or the error predicting that request alone raised."""


def predict_apart(predict: Callable[[Batch], Batch], batches: Sequence[Batch]) -> list[Outcome]:
    """One outcome per batch, in order; an error only for a batch that fails on its own.

    ``batches`` must share one signature (see ``assembly.signature``).
    """
    try:
        outputs = predict(merge_batches(batches))
        return list(split_outputs(outputs, [rows_of(batch) for batch in batches]))
    except Exception as error:
        if len(batches) == 1:
            return [error]
    middle = len(batches) // 2
    return predict_apart(predict, batches[:middle]) + predict_apart(predict, batches[middle:])
