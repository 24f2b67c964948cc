"""When to hand queued requests to the model, and how many of them to merge.

Pure: no I/O, no clock. Both decisions read the model's cost (``cost.Cost``: a fixed part per
call and a part per row, measured at warm-up and kept up to date).

Flushing: a lone request is never held back. The batcher waits for more requests only while
(a) some could arrive at all (a connection is open that has no request waiting: at one
connection, or when every connection's request is already queued, nothing can), (b) requests
that were answered in the previous batch are expected back (closed-loop clients), and (c) the
wait is shorter than ``max_latency_s`` and than the fixed cost of a call: merging a straggler
saves at most one fixed cost, so waiting longer cannot pay (measured in bench/serve.py: on a
40 µs ONNX model a 5 ms wait for stragglers cost 30% of throughput). A model whose cost is all
per row gains nothing from merging and is never waited for.

Merging: the queue's head is taken up to the limits in both units (rows per call, requests per
batch); the first request always goes, even when it alone is over the row limit (it is
predicted alone, never refused). Each further request joins only when that lowers the sum of
the requests' completion times: joining delays the ``k`` requests already in the batch by its
rows' cost and spares itself a fixed cost and the rows behind it (``batch_length``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlkube.batching.cost import Cost


@dataclass(frozen=True, slots=True)
class Limits:
    """A batch's bounds, from the spec's batching section."""

    max_rows: int
    """Most rows in one predict call (``maxBatchSize``); a larger request goes alone."""

    max_requests: int
    """Most requests merged into one predict call (``maxBatchRequests``)."""

    max_latency_s: float
    """Longest a request waits for others while the model is idle (``maxLatencyMs``)."""


UNBATCHED = Limits(max_rows=1, max_requests=1, max_latency_s=0.0)


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the batcher knows when it decides."""

    queued_requests: int
    queued_rows: int
    oldest_wait_s: float
    busy: bool
    expected_requests: int
    """How many requests the previous batch held: closed-loop callers tend to send as many."""

    cost: Cost
    may_arrive: int
    """How many more requests could arrive soon (open connections with nothing queued)."""


@dataclass(frozen=True, slots=True)
class FlushDecision:
    """Flush now, or look again after ``wait_s`` (None: wait for the running batch)."""

    flush: bool
    wait_s: float | None = None
    reason: str = ""
    """Why, in a word (the batcher counts decisions by reason)."""


def flush_decision(view: QueueView, limits: Limits) -> FlushDecision:
    """Whether to start a predict call now. Pure."""
    if view.queued_requests == 0:
        return FlushDecision(flush=False, reason="empty")
    if view.busy:
        # One predict call at a time per model: the next batch forms behind the running one.
        return FlushDecision(flush=False, reason="busy")
    if view.queued_rows >= limits.max_rows or view.queued_requests >= limits.max_requests:
        return FlushDecision(flush=True, reason="full")
    if view.may_arrive <= 0:
        return FlushDecision(flush=True, reason="nothing-can-arrive")
    if view.queued_requests >= view.expected_requests:
        return FlushDecision(flush=True, reason="all-expected")
    budget = min(limits.max_latency_s, view.cost.fixed_s)
    if view.oldest_wait_s >= budget:
        return FlushDecision(flush=True, reason="waited" if budget > 0 else "not-worth-waiting")
    return FlushDecision(flush=False, wait_s=budget - view.oldest_wait_s, reason="waiting")


def batch_length(rows: Sequence[int], limits: Limits, cost: Cost) -> int:
    """How many requests from the head of the queue (``rows`` each) go into the next call.

    ``rows`` holds the head requests that could share a batch (same signature), in order.
    Request j joins the k before it when ``k * per_row * rows[j] <= fixed + per_row * rest``
    (``rest``: the rows queued behind it): merged, the k wait for its rows; left out, it waits
    for this call and a call of its own. Pure.
    """
    if not rows:
        return 0
    behind = sum(rows)
    taken = 1
    total = rows[0]
    behind -= rows[0]
    fixed, per_row = cost.fixed_s, cost.per_row_s
    for size in rows[1:]:
        if taken >= limits.max_requests or total + size > limits.max_rows:
            break
        behind -= size
        if taken * per_row * size > fixed + per_row * behind:
            break
        taken += 1
        total += size
    return taken
