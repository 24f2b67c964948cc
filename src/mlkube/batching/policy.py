"""When to hand queued requests to the model: the flush decision.

Pure: no I/O, no clock. The decision is adaptive. A lone request is never held back: the
batcher waits for more rows only while requests that were answered in the previous batch are
expected back (closed-loop clients), and never longer than ``max_latency_s`` nor longer than one
predict call takes. Waiting longer than a call costs cannot pay: running the rows now and the
stragglers in the next call would be done sooner (measured in bench/serve.py: on a 40 µs ONNX
model a 5 ms wait for stragglers cost 30% of throughput).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the batcher knows when it decides."""

    queued_requests: int
    queued_rows: int
    oldest_wait_s: float
    busy: bool
    expected_requests: int
    """How many requests the previous batch held: closed-loop callers tend to send as many."""

    predict_s: float = 0.0
    """Moving average of one predict call's duration."""


@dataclass(frozen=True, slots=True)
class FlushDecision:
    """Flush now, or look again after ``wait_s`` (None: wait for the running batch)."""

    flush: bool
    wait_s: float | None = None


def flush_decision(view: QueueView, *, max_batch_size: int, max_latency_s: float) -> FlushDecision:
    """Whether to start a predict call now. Pure."""
    if view.queued_requests == 0:
        return FlushDecision(flush=False)
    if view.busy:
        # One predict call at a time per model: the next batch forms behind the running one.
        return FlushDecision(flush=False)
    if view.queued_rows >= max_batch_size:
        return FlushDecision(flush=True)
    if view.queued_requests >= view.expected_requests:
        return FlushDecision(flush=True)
    budget = min(max_latency_s, view.predict_s)
    if view.oldest_wait_s >= budget:
        return FlushDecision(flush=True)
    return FlushDecision(flush=False, wait_s=budget - view.oldest_wait_s)
