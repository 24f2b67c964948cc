"""When to hand queued requests to the model: the flush decision.

Pure: no I/O, no clock. The decision is adaptive. A lone request is never held back: the
batcher waits for more rows only while requests that were answered in the previous batch are
expected back (closed-loop clients), and never longer than ``max_latency_s``.
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
    if view.oldest_wait_s >= max_latency_s:
        return FlushDecision(flush=True)
    return FlushDecision(flush=False, wait_s=max_latency_s - view.oldest_wait_s)
