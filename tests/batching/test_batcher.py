import asyncio
import threading

import numpy as np
import pytest

from mlkube.batching.batcher import Batcher, BatcherSettings
from mlkube.clock import ManualClock, SystemClock
from mlkube.errors import (
    InvalidInputError,
    OverloadedError,
    PredictError,
    RequestTimeoutError,
)
from mlkube.runtimes.base import Batch


class RecordingObserver:
    def __init__(self):
        self.batches: list[tuple[int, int]] = []
        self.failures = 0

    def batch_done(self, *, rows, requests, predict_s):
        self.batches.append((rows, requests))

    def queue_wait(self, seconds):
        pass

    def predict_failed(self):
        self.failures += 1

    def cost_estimated(self, *, fixed_s, per_row_s):
        self.cost = (fixed_s, per_row_s)


def doubling(batch):
    return {"y": batch["x"] * 2}


def request(value: float, rows: int = 1) -> Batch:
    return {"x": np.full((rows, 2), value, dtype=np.float32)}


async def test_concurrent_requests_share_one_predict_call_and_get_their_own_rows():
    observer = RecordingObserver()
    batcher = Batcher(
        doubling, BatcherSettings(max_batch_size=64), clock=SystemClock(), observer=observer
    )
    futures = [batcher.submit_future(request(i)) for i in range(20)]
    results = await asyncio.gather(*futures)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], np.full((1, 2), 2 * i))
    assert observer.batches == [(20, 20)]
    await batcher.close()


async def test_batches_never_exceed_max_batch_size():
    observer = RecordingObserver()
    batcher = Batcher(
        doubling, BatcherSettings(max_batch_size=8), clock=SystemClock(), observer=observer
    )
    await asyncio.gather(*(batcher.submit_future(request(i, rows=3)) for i in range(10)))
    assert all(rows <= 8 for rows, _ in observer.batches)
    assert sum(rows for rows, _ in observer.batches) == 30
    await batcher.close()


async def test_a_request_over_the_row_limit_is_predicted_alone_not_refused():
    observer = RecordingObserver()
    batcher = Batcher(
        doubling, BatcherSettings(max_batch_size=8), clock=SystemClock(), observer=observer
    )
    big, *small = await asyncio.gather(
        batcher.submit_future(request(3, rows=20)),
        batcher.submit_future(request(1)),
        batcher.submit_future(request(2)),
    )
    np.testing.assert_array_equal(big["y"], np.full((20, 2), 6))
    assert [len(answer["y"]) for answer in small] == [1, 1]
    assert observer.batches == [(20, 1), (2, 2)]
    await batcher.close()


async def test_the_request_limit_bounds_a_batch_of_small_requests():
    observer = RecordingObserver()
    batcher = Batcher(
        doubling, BatcherSettings(max_batch_requests=4), clock=SystemClock(), observer=observer
    )
    await asyncio.gather(*(batcher.submit_future(request(i)) for i in range(10)))
    assert [requests for _, requests in observer.batches] == [4, 4, 2]
    await batcher.close()


async def test_disabled_batching_predicts_each_request_alone():
    observer = RecordingObserver()
    batcher = Batcher(
        doubling, BatcherSettings(enabled=False), clock=SystemClock(), observer=observer
    )
    await asyncio.gather(*(batcher.submit_future(request(i)) for i in range(5)))
    assert observer.batches == [(1, 1)] * 5
    await batcher.close()


async def test_requests_of_different_shapes_do_not_merge():
    observer = RecordingObserver()
    batcher = Batcher(
        lambda b: {"y": b["x"].sum(axis=1)},
        BatcherSettings(),
        clock=SystemClock(),
        observer=observer,
    )
    narrow: Batch = {"x": np.ones((1, 2), np.float32)}
    wide: Batch = {"x": np.ones((1, 5), np.float32)}
    results = await asyncio.gather(batcher.submit_future(narrow), batcher.submit_future(wide))
    assert [float(r["y"][0]) for r in results] == [2.0, 5.0]
    assert len(observer.batches) == 2
    await batcher.close()


async def test_a_model_that_always_fails_fails_every_request_with_its_own_error():
    observer = RecordingObserver()

    def broken(batch):
        raise RuntimeError(f"boom on {batch['x'][:, 0].tolist()}")

    batcher = Batcher(broken, BatcherSettings(), clock=SystemClock(), observer=observer)
    futures = [batcher.submit_future(request(i)) for i in range(3)]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        assert isinstance(outcome, PredictError)
        assert str(outcome) == f"the model failed to predict: boom on [{float(i)}]"
    assert observer.failures == 3
    await batcher.close()


def poisoned_below_zero(batch):
    """Fails the whole batch when any row is negative, naming that row (as user code does)."""
    values = batch["x"][:, 0]
    if (values < 0).any():
        raise ValueError(f"cannot score {values[values < 0].tolist()}")
    return doubling(batch)


@pytest.mark.parametrize("threaded", [False, True])
async def test_a_failing_request_fails_alone_and_its_batch_mates_get_their_answers(threaded):
    observer = RecordingObserver()
    calls: list[int] = []

    def model(batch):
        calls.append(len(batch["x"]))
        return poisoned_below_zero(batch)

    batcher = Batcher(
        model,
        BatcherSettings(max_batch_size=67, max_batch_requests=67),
        clock=SystemClock(),
        observer=observer,
    )
    batcher.set_predict_seconds(1.0 if threaded else 0.0)
    values = [float(i) for i in range(64)]
    for poisoned in (5, 30, 60):
        values.insert(poisoned, -float(poisoned))
    futures = [batcher.submit_future(request(value)) for value in values]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for value, outcome in zip(values, outcomes, strict=True):
        if value < 0:
            assert isinstance(outcome, PredictError)
            # its own error text, never a batch-mate's
            assert str(outcome) == f"the model failed to predict: cannot score [{value}]"
        else:
            assert isinstance(outcome, dict)
            np.testing.assert_array_equal(outcome["y"], np.full((1, 2), 2 * value))
    assert observer.failures == 3
    assert calls[0] == 67 and len(calls) < 67  # bisected, not one call per request
    await batcher.close()


async def test_a_runtimes_verdict_on_the_input_reaches_the_caller_as_is():
    def model(batch):
        if batch["x"].shape[1] != 2:
            raise InvalidInputError("input 'x' must have 2 columns")
        return doubling(batch)

    batcher = Batcher(model, BatcherSettings(), clock=SystemClock(), observer=RecordingObserver())
    wide: Batch = {"x": np.ones((1, 3), np.float32)}
    with pytest.raises(InvalidInputError, match="2 columns"):
        await batcher.submit_future(wide)
    await batcher.close()


async def test_outputs_with_wrong_row_count_are_a_predict_error():
    batcher = Batcher(
        lambda b: {"y": np.zeros(len(b["x"]) + 1)},
        BatcherSettings(),
        clock=SystemClock(),
        observer=RecordingObserver(),
    )
    futures = [batcher.submit_future(request(i)) for i in range(2)]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(o, PredictError) for o in outcomes)
    await batcher.close()


async def test_full_queue_refuses_with_retry_after():
    release = threading.Event()

    def slow(batch):
        release.wait(5)
        return doubling(batch)

    batcher = Batcher(
        slow,
        BatcherSettings(max_queue=2, max_batch_size=1),
        clock=SystemClock(),
        observer=RecordingObserver(),
    )
    batcher.set_predict_seconds(1.0)  # slow model: predict runs in a thread
    first = batcher.submit_future(request(1))
    await asyncio.sleep(0.05)  # the first request is now being predicted
    queued = [batcher.submit_future(request(2)), batcher.submit_future(request(3))]
    with pytest.raises(OverloadedError) as refused:
        batcher.submit_future(request(4))
    assert refused.value.retry_after_s is not None
    release.set()
    await asyncio.gather(first, *queued)
    await batcher.close()


async def test_requests_past_their_deadline_get_a_timeout():
    release = threading.Event()

    def slow(batch):
        release.wait(5)
        return doubling(batch)

    batcher = Batcher(
        slow, BatcherSettings(timeout_s=0.1), clock=SystemClock(), observer=RecordingObserver()
    )
    batcher.set_predict_seconds(1.0)
    future = batcher.submit_future(request(1))
    with pytest.raises(RequestTimeoutError):
        await asyncio.wait_for(future, 2)
    release.set()
    await batcher.close()


async def test_slow_models_run_off_the_event_loop():
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def record(batch):
        seen.append(threading.get_ident())
        return doubling(batch)

    batcher = Batcher(record, BatcherSettings(), clock=SystemClock(), observer=RecordingObserver())
    batcher.set_predict_seconds(0.5)
    await batcher.submit_future(request(1))
    batcher.set_predict_seconds(0.0)
    await batcher.submit_future(request(1))
    assert seen[0] != loop_thread
    assert seen[1] == loop_thread
    await batcher.close()


async def test_user_code_never_runs_on_the_event_loop_however_fast():
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def record(batch):
        seen.append(threading.get_ident())
        return doubling(batch)

    batcher = Batcher(
        record,
        BatcherSettings(inline=False),
        clock=SystemClock(),
        observer=RecordingObserver(),
    )
    batcher.set_predict_seconds(0.0)
    for _ in range(3):
        await batcher.submit_future(request(1))
    assert loop_thread not in seen
    await batcher.close()


async def test_a_batch_far_larger_than_those_measured_fast_runs_off_the_loop():
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []

    def record(batch):
        seen.append((len(batch["x"]), threading.get_ident()))
        return doubling(batch)

    batcher = Batcher(record, BatcherSettings(), clock=SystemClock(), observer=RecordingObserver())
    batcher.set_predict_seconds(0.0)
    await batcher.submit_future(request(1))  # measured fast on one row
    await batcher.submit_future(request(1, rows=1000))
    assert seen[0] == (1, loop_thread)
    assert seen[1][0] == 1000 and seen[1][1] != loop_thread
    await batcher.close()


@pytest.mark.parametrize(
    ("may_arrive", "on_the_loop"),
    [pytest.param(0, True, id="nothing-can-arrive"), pytest.param(3, False, id="others-may")],
)
async def test_a_lone_request_of_a_few_ms_predicts_inline_only_when_nothing_can_arrive(
    may_arrive, on_the_loop
):
    # The thread hop is pure added latency for a lone request (the bare app predicts inline);
    # with other connections able to send, the loop must stay free to parse them.
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def record(batch):
        seen.append(threading.get_ident())
        return doubling(batch)

    observer = RecordingObserver()
    batcher = Batcher(
        record,
        BatcherSettings(),
        clock=SystemClock(),
        observer=observer,
        may_arrive=lambda: may_arrive,
    )
    batcher.calibrate([(1, 0.004), (32, 0.004)])  # a flat 4 ms model: over the fast bound
    assert observer.cost == (pytest.approx(0.004), 0.0)
    await batcher.submit_future(request(1))
    assert (seen[0] == loop_thread) is on_the_loop
    reason = "nothing-can-arrive" if on_the_loop else "all-expected"
    assert batcher.decisions[reason] == 1
    await batcher.close()


async def test_user_code_runs_in_the_thread_even_when_nothing_can_arrive():
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def record(batch):
        seen.append(threading.get_ident())
        return doubling(batch)

    batcher = Batcher(
        record,
        BatcherSettings(inline=False),
        clock=SystemClock(),
        observer=RecordingObserver(),
        may_arrive=lambda: 0,
    )
    batcher.calibrate([(1, 0.004)])
    await batcher.submit_future(request(1))
    assert seen[0] != loop_thread
    await batcher.close()


async def test_the_deadline_sweeper_stops_when_idle_and_starts_again():
    # An idle worker must not be woken 20 times a second by a timer with nothing to watch.
    clock = ManualClock()
    batcher = Batcher(doubling, BatcherSettings(), clock=clock, observer=RecordingObserver())
    await batcher.submit_future(request(1))
    assert _watching(batcher)
    for _ in range(100):  # ManualClock.sleep advances at once: 100 sweeps = 5 s of idleness
        if not _watching(batcher):
            break
        await asyncio.sleep(0)
    assert not _watching(batcher)
    await batcher.submit_future(request(2))
    assert _watching(batcher)
    await batcher.close()


def _watching(batcher: Batcher) -> bool:
    # A call, not the property itself: mypy would keep its value narrowed across awaits.
    return batcher.watching_deadlines


async def test_a_lone_request_when_nothing_can_arrive_is_answered_inside_submit():
    # One connection, its request the only one: the queue and a flush on the next loop
    # iteration would decide "predict it now, alone" anyway, so it is predicted at once.
    loop_thread = threading.get_ident()
    seen: list[int] = []
    answers: list[tuple[Batch | None, BaseException | None]] = []

    def record(batch):
        seen.append(threading.get_ident())
        return doubling(batch)

    observer = RecordingObserver()
    batcher = Batcher(
        record, BatcherSettings(), clock=SystemClock(), observer=observer, may_arrive=lambda: 0
    )
    batcher.submit(request(3), lambda outputs, error: answers.append((outputs, error)))
    assert len(answers) == 1  # before submit returned: no loop iteration in between
    outputs, error = answers[0]
    assert error is None and outputs is not None
    np.testing.assert_array_equal(outputs["y"], np.full((1, 2), 6))
    assert seen == [loop_thread]
    assert batcher.direct == 1
    assert batcher.decisions["nothing-can-arrive"] == 1
    assert observer.batches == [(1, 1)]
    assert not batcher.watching_deadlines  # nothing left to watch
    await batcher.close()


async def test_a_lone_request_that_fails_inside_submit_gets_its_own_error():
    answers: list[BaseException | None] = []

    def broken(batch):
        raise ValueError("bad row")

    observer = RecordingObserver()
    batcher = Batcher(
        broken, BatcherSettings(), clock=SystemClock(), observer=observer, may_arrive=lambda: 0
    )
    batcher.submit(request(1), lambda outputs, error: answers.append(error))
    assert batcher.direct == 1
    assert len(answers) == 1 and isinstance(answers[0], PredictError)
    assert "bad row" in str(answers[0])
    assert observer.failures == 1
    await batcher.close()


@pytest.mark.parametrize(
    ("may_arrive", "settings"),
    [
        pytest.param(1, BatcherSettings(), id="another-request-may-arrive"),
        pytest.param(0, BatcherSettings(inline=False), id="user-code"),
    ],
)
async def test_a_request_is_queued_not_answered_inside_submit_otherwise(may_arrive, settings):
    answers: list[Batch | None] = []
    batcher = Batcher(
        doubling,
        settings,
        clock=SystemClock(),
        observer=RecordingObserver(),
        may_arrive=lambda: may_arrive,
    )
    batcher.submit(request(2), lambda outputs, error: answers.append(outputs))
    assert answers == []  # answered later, from the loop
    assert batcher.queue_depth == 1
    for _ in range(100):
        if answers:
            break
        await asyncio.sleep(0.001)
    assert answers and answers[0] is not None
    assert batcher.direct == 0
    await batcher.close()


async def test_a_request_behind_a_running_batch_waits_for_it_even_when_alone():
    # The model is busy in its thread: the new request queues behind the running batch
    # (one predict call at a time per model), it is not predicted beside it.
    release = threading.Event()
    calls: list[int] = []

    def slow(batch):
        calls.append(len(batch["x"]))
        release.wait(5)
        return doubling(batch)

    arriving = [1]
    batcher = Batcher(
        slow,
        BatcherSettings(),
        clock=SystemClock(),
        observer=RecordingObserver(),
        may_arrive=lambda: arriving[0],
    )
    batcher.calibrate([(1, 0.05)])  # slow: predicted in the thread
    first = batcher.submit_future(request(1))
    await asyncio.sleep(0.01)
    arriving[0] = 0  # from now on nothing else can arrive
    second: list[Batch | None] = []
    batcher.submit(request(2), lambda outputs, error: second.append(outputs))
    assert second == [] and batcher.direct == 0
    release.set()
    await first
    for _ in range(200):
        if second:
            break
        await asyncio.sleep(0.005)
    assert second and second[0] is not None
    assert calls == [1, 1]
    await batcher.close()
