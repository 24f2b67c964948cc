"""The async plumbing around the pure batching core: queue, callbacks, deadlines, predict calls.

One ``Batcher`` per model. ``submit`` queues a request's inputs with a callback that receives
that request's outputs, or the error of its batch: no request is left hanging. Callbacks, not
futures, on the hot path: each future hop costs an event-loop iteration per request
(``submit_future`` wraps a callback in a future for callers that want one).
Predict calls run one at a time per model; fast models run inline on the event loop (a thread
hop costs more than the prediction), slow ones in a worker thread so the loop keeps parsing.
An inline call is bounded: it is allowed only for library runtimes (``inline=False`` for user
code, which may sleep or loop on one input), only while the moving average is under
``INLINE_PREDICT_MAX_S``, and only for batches at most twice as large as the largest batch
measured under that bound, or, when no other request can arrive (low load), while the cost
model puts the call under ``INLINE_ALONE_MAX_S``; anything else runs in the thread, where the
per-request deadline answers the caller even when the call never returns.

When a merged batch fails, its requests are predicted again in halves (``isolation``), so
only a request that fails on its own gets an error, and only its own.

When to flush and how many requests to merge is ``policy``'s call, from the model's measured
cost (``cost``: timed at warm-up by ``calibrate``, then followed from every real call) and from
how many more requests could arrive (``may_arrive``: the server's open connections that have
no request waiting). Every decision is counted by its reason in ``decisions``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

from mlkube.batching.assembly import Signature, rows_of, signature
from mlkube.batching.cost import CostModel
from mlkube.batching.isolation import Outcome, predict_apart
from mlkube.batching.policy import UNBATCHED, Limits, QueueView, batch_length, flush_decision
from mlkube.clock import Clock
from mlkube.errors import OverloadedError, PredictError, RequestTimeoutError, ServingError
from mlkube.runtimes.base import Batch

logger = logging.getLogger(__name__)

# A predict call faster than this (moving average) runs inline on the event loop: below it the
# hand-off to a thread and back costs more than the prediction itself (bench/serve.py).
INLINE_PREDICT_MAX_S = 0.0015
# An inline batch may be at most this many times the rows of the largest batch measured fast:
# the moving average says nothing about a batch much larger than those it was measured on.
INLINE_GROWTH = 2
# When no other request can arrive (every open connection's request is in this batch), a
# library runtime's call estimated under this runs inline too: the hand-off to the predict
# thread and back (two thread wake-ups and a GIL hand-over, each waiting for a core on a busy
# machine) is then pure added latency, and nothing is waiting to be parsed meanwhile. The bare
# app of bench/serve.py predicts inline the same way.
INLINE_ALONE_MAX_S = 0.02
# How often queued requests are checked against their deadline.
DEADLINE_SWEEP_S = 0.05
# The deadline sweeper stops after this long with nothing to watch.
SWEEPER_IDLE_S = 1.0
_EWMA_WEIGHT = 0.2


class BatchObserver(Protocol):
    """Where the batcher reports what it does (the server's metrics)."""

    def batch_done(self, *, rows: int, requests: int, predict_s: float) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def predict_failed(self) -> None: ...

    def cost_estimated(self, *, fixed_s: float, per_row_s: float) -> None: ...


Done = Callable[[Batch | None, BaseException | None], None]
"""Called once per request: ``(outputs, None)`` or ``(None, error)``."""


@dataclass(slots=True)
class _Item:
    inputs: Batch
    rows: int
    signature: Signature
    done: Done
    enqueued_at: float
    deadline: float
    finished: bool = False

    def resolve(self, outputs: Batch | None, error: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            self.done(outputs, error)
        except Exception:  # the callback is ours; a bug there must not stop the batcher
            logger.exception("a request's completion callback failed")


@dataclass(slots=True)
class BatcherSettings:
    """Knobs of one batcher (from the spec's batching and server sections)."""

    max_batch_size: int = 1024
    """Most rows per predict call; a larger request is predicted alone."""
    max_batch_requests: int = 32
    """Most requests merged into one predict call."""
    max_latency_s: float = 0.005
    max_queue: int = 2048
    timeout_s: float = 30.0
    enabled: bool = True
    inline: bool = True
    """Whether fast predict calls may run on the event loop (False for user code)."""

    def limits(self) -> Limits:
        if not self.enabled:
            return UNBATCHED
        return Limits(self.max_batch_size, self.max_batch_requests, self.max_latency_s)


@dataclass(slots=True)
class _Stats:
    predict_s: float = 0.0
    expected_requests: int = 1
    fast_rows: int = 1
    """Rows of the largest batch whose call took less than INLINE_PREDICT_MAX_S."""
    measured_rows: int = 1
    """Rows of the largest batch timed so far (warm-up or real calls)."""
    running: bool = False
    scheduled: bool = False
    timer: asyncio.TimerHandle | None = None

    def inline(self, rows: int) -> bool:
        return self.predict_s < INLINE_PREDICT_MAX_S and rows <= INLINE_GROWTH * self.fast_rows


class Batcher:
    """Queues requests for one model and runs them in adaptive batches."""

    def __init__(
        self,
        predict: Callable[[Batch], Batch],
        settings: BatcherSettings,
        *,
        clock: Clock,
        observer: BatchObserver,
        executor: ThreadPoolExecutor | None = None,
        may_arrive: Callable[[], int] | None = None,
    ) -> None:
        self._predict = predict
        self._settings = settings
        self._clock = clock
        self._observer = observer
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="predict")
        self._queue: deque[_Item] = deque()
        self._running: list[_Item] = []
        self._stats = _Stats()
        self._sweeper: asyncio.Task[None] | None = None
        self._limits = settings.limits()
        # Unknown (no server to ask): assume requests may always arrive, as a socket could.
        self._may_arrive = may_arrive or (lambda: 1 << 30)
        self.cost = CostModel()
        self.decisions: Counter[str] = Counter()
        """Flush decisions taken, by reason (``policy.FlushDecision.reason``)."""
        self.direct = 0
        """Requests predicted inside ``submit``: no queue, no loop iteration in between."""

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def watching_deadlines(self) -> bool:
        """Whether the deadline sweeper runs (it stops when idle)."""
        return self._sweeper is not None and not self._sweeper.done()

    def set_predict_seconds(self, seconds: float) -> None:
        """Seed the moving average (e.g. with the warm-up prediction's duration)."""
        self.calibrate([(1, seconds)])

    def calibrate(self, samples: list[tuple[int, float]]) -> None:
        """Seed the cost model with ``(rows, seconds)`` of timed calls (``cost.measure``)."""
        if not samples:
            return
        self.cost = CostModel(samples)
        self._stats.predict_s = min(seconds for _, seconds in samples)
        self._stats.fast_rows = max(
            [1] + [rows for rows, seconds in samples if seconds < INLINE_PREDICT_MAX_S]
        )
        self._stats.measured_rows = max(rows for rows, _ in samples)
        self._report_cost()

    def _report_cost(self) -> None:
        cost = self.cost.cost
        self._observer.cost_estimated(fixed_s=cost.fixed_s, per_row_s=cost.per_row_s)

    def submit_future(self, inputs: Batch) -> asyncio.Future[Batch]:
        """``submit`` with a future that resolves to this request's rows of the outputs."""
        future: asyncio.Future[Batch] = asyncio.get_running_loop().create_future()

        def settle(outputs: Batch | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outputs if outputs is not None else {})

        self.submit(inputs, settle)
        return future

    def submit(self, inputs: Batch, done: Done) -> None:
        """Queue ``inputs``; ``done`` is called once with this request's rows or an error.

        Raises OverloadedError at once when the queue is full. A request that finds the model
        idle, nothing queued and nothing else able to arrive is predicted at once, inside this
        call, when it may run inline (``done`` is then called before ``submit`` returns).
        """
        queue = self._queue
        if len(queue) >= self._settings.max_queue:
            retry = max(1.0, round(self._stats.predict_s * len(queue), 1))
            raise OverloadedError(
                f"the model's queue is full ({self._settings.max_queue} requests waiting)",
                retry_after_s=retry,
            )
        stats = self._stats
        now = self._clock.monotonic()
        rows = rows_of(inputs)
        if (
            not queue
            and not stats.running
            and not stats.scheduled
            and self._settings.inline
            and self._may_arrive() <= 0
        ):
            # The lone request of a quiet server (one connection, sequential clients): the
            # queue, the flush on the next loop iteration and the batch assembly would decide
            # exactly this (flush now, alone) and only add latency.
            limits = self._limits
            full = rows >= limits.max_rows or limits.max_requests <= 1
            if self._may_inline(rows, alone=not full):
                self.direct += 1
                self.decisions["full" if full else "nothing-can-arrive"] += 1
                item = _Item(inputs, rows, (), done, now, now + self._settings.timeout_s)
                self._start([item], inline=True)
                return
        loop = asyncio.get_running_loop()
        queue.append(
            _Item(inputs, rows, signature(inputs), done, now, now + self._settings.timeout_s)
        )
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep_deadlines())
        self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # call_soon, not an immediate flush: requests parsed in this same loop iteration join.
        stats = self._stats
        if not stats.scheduled and not stats.running:
            stats.scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        stats = self._stats
        stats.scheduled = False
        if stats.timer is not None:
            stats.timer.cancel()
            stats.timer = None
        self._drop_finished()
        if not self._queue:
            return
        decision = flush_decision(
            QueueView(
                queued_requests=len(self._queue),
                queued_rows=sum(item.rows for item in self._queue),
                oldest_wait_s=self._clock.monotonic() - self._queue[0].enqueued_at,
                busy=stats.running,
                expected_requests=stats.expected_requests,
                cost=self.cost.cost,
                may_arrive=self._may_arrive(),
            ),
            self._limits,
        )
        self.decisions[decision.reason] += 1
        if decision.flush:
            self._start(self._take(), alone=decision.reason == "nothing-can-arrive")
        elif decision.wait_s is not None:
            loop = asyncio.get_running_loop()
            stats.timer = loop.call_later(decision.wait_s, self._flush)

    def _drop_finished(self) -> None:
        while self._queue and self._queue[0].finished:
            self._queue.popleft()

    def _take(self) -> list[_Item]:
        """The head of the queue that shares one signature, as much as ``policy`` merges."""
        limits = self._limits
        queue = self._queue
        first = queue[0]
        sizes = [first.rows]
        rows = first.rows
        for item in queue:
            if len(sizes) >= limits.max_requests:
                break
            if item is first or item.finished:
                continue
            if item.signature != first.signature or rows + item.rows > limits.max_rows:
                break
            sizes.append(item.rows)
            rows += item.rows
        wanted = batch_length(sizes, limits, self.cost.cost) if len(sizes) > 1 else 1
        items: list[_Item] = []
        while len(items) < wanted:
            item = queue.popleft()
            if not item.finished:
                items.append(item)
        return items

    def _may_inline(self, rows: int, *, alone: bool) -> bool:
        """Whether a batch of ``rows`` may run on the event loop (see the module's docstring)."""
        stats = self._stats
        return self._settings.inline and (
            stats.inline(rows)
            or (
                alone
                and rows <= INLINE_GROWTH * stats.measured_rows
                and self.cost.cost.of(rows) < INLINE_ALONE_MAX_S
            )
        )

    def _start(self, items: list[_Item], *, alone: bool = False, inline: bool = False) -> None:
        stats = self._stats
        stats.running = True
        stats.expected_requests = len(items)
        self._running = items
        now = self._clock.monotonic()
        for item in items:
            self._observer.queue_wait(now - item.enqueued_at)
        batches = [item.inputs for item in items]
        rows = sum(item.rows for item in items)
        if inline or self._may_inline(rows, alone=alone):
            started = self._clock.monotonic()
            self._finish(items, predict_apart(self._predict, batches), started)
            return
        loop = asyncio.get_running_loop()
        started = self._clock.monotonic()
        future = loop.run_in_executor(self._executor, predict_apart, self._predict, batches)
        future.add_done_callback(lambda f: self._threaded_done(f, items, started))

    def _threaded_done(
        self, future: asyncio.Future[list[Outcome]], items: list[_Item], started: float
    ) -> None:
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:  # predict_apart itself failed: our bug
            failure = error if isinstance(error, Exception) else RuntimeError("cancelled")
            outcomes: list[Outcome] = [failure] * len(items)
        else:
            outcomes = future.result()
        self._finish(items, outcomes, started)

    def _finish(self, items: list[_Item], outcomes: list[Outcome], started: float) -> None:
        stats = self._stats
        elapsed = self._clock.monotonic() - started
        stats.predict_s = (1 - _EWMA_WEIGHT) * stats.predict_s + _EWMA_WEIGHT * elapsed
        rows = sum(item.rows for item in items)
        if len(outcomes) == 1 or not any(isinstance(o, Exception) for o in outcomes):
            # A failed merged batch was bisected: its time is several calls, not one.
            before = self.cost.cost
            self.cost.observe(rows, elapsed)
            if self.cost.cost is not before:
                self._report_cost()
        if elapsed < INLINE_PREDICT_MAX_S:
            stats.fast_rows = max(stats.fast_rows, rows)
        stats.measured_rows = max(stats.measured_rows, rows)
        stats.running = False
        self._running = []
        self._observer.batch_done(rows=rows, requests=len(items), predict_s=elapsed)
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._observer.predict_failed()
                logger.error("predict failed on a request of %d rows: %s", item.rows, outcome)
                item.resolve(None, _request_error(outcome))
            else:
                item.resolve(outcome, None)
        if self._queue:
            self._schedule(asyncio.get_running_loop())

    async def _sweep_deadlines(self) -> None:
        # Ends after SWEEPER_IDLE_S with nothing queued or running (``submit`` starts it
        # again): an idle worker then has no timer waking it up 20 times a second.
        idle_sweeps = 0
        while idle_sweeps * DEADLINE_SWEEP_S < SWEEPER_IDLE_S:
            await self._clock.sleep(DEADLINE_SWEEP_S)
            idle_sweeps = idle_sweeps + 1 if not self._queue and not self._running else 0
            now = self._clock.monotonic()
            for item in chain(self._queue, self._running):
                if not item.finished and now >= item.deadline:
                    item.resolve(
                        None,
                        RequestTimeoutError(f"no prediction within {self._settings.timeout_s:g} s"),
                    )
        self._sweeper = None

    async def close(self) -> None:
        """Stop the deadline sweeper and fail whatever is still queued."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._queue:
            item = self._queue.popleft()
            item.resolve(None, PredictError("the server stopped before predicting"))
        self._executor.shutdown(wait=False, cancel_futures=True)


def _request_error(error: Exception) -> ServingError:
    """What the caller is told: a runtime's verdict on the input as is, anything else a 500."""
    if isinstance(error, ServingError):
        return error
    return PredictError(f"the model failed to predict: {error}")
