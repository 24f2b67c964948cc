"""The job state machine: gang restarts within backoffLimit, deadline, success, preemption."""

from __future__ import annotations

import pytest

from mlkube.backends.local.decisions.admission import (
    Capacity,
    Claim,
    QuotaLimits,
    admit,
    gang_claim,
)
from mlkube.backends.local.decisions.jobs import (
    GroupAction,
    JobPhase,
    JobState,
    QueuedJob,
    WorkerExit,
    admitted,
    cancelled,
    preempted,
    queue_order,
    step_job,
    torchrun_env,
)
from mlkube.spec.job import TrainingJobSpec

SPEC = TrainingJobSpec.model_validate(
    {"run": {"module": "train"}, "workers": 2, "backoffLimit": 1, "activeDeadlineSeconds": 100}
)


def _running(now: float = 0.0) -> JobState:
    return admitted(JobState(submitted_at=now), now=now).state


def test_admission_starts_every_worker() -> None:
    step = admitted(JobState(), now=5.0)
    assert (step.state.phase, step.action) == (JobPhase.RUNNING, GroupAction.START)
    assert step.state.started_at == 5.0


def test_the_job_succeeds_only_when_every_worker_exited_zero() -> None:
    state = _running()
    assert step_job(SPEC, state, [WorkerExit(0, 0)], now=1).state.phase is JobPhase.RUNNING
    done = step_job(SPEC, state, [WorkerExit(0, 0), WorkerExit(1, 0)], now=2)
    assert done.state.phase is JobPhase.SUCCEEDED
    assert done.events[0][1] == "Completed"


def test_one_failed_worker_restarts_the_group_then_fails_the_job() -> None:
    state = _running()
    first = step_job(SPEC, state, [WorkerExit(1, None, 9)], now=1)
    assert (first.action, first.state.restarts) == (GroupAction.START, 1)
    assert "worker 1 exited with killed by signal 9" in first.events[0][2]
    second = step_job(SPEC, first.state, [WorkerExit(0, 3)], now=2)
    assert second.state.phase is JobPhase.FAILED
    assert second.action is GroupAction.STOP
    assert second.state.reason.startswith("BackoffLimitExceeded: worker 0 exited with code 3")


def test_the_deadline_counts_retries_too() -> None:
    state = _running(now=0)
    restarted = step_job(SPEC, state, [WorkerExit(0, 1)], now=90).state
    late = step_job(SPEC, restarted, [], now=101)
    assert late.state.phase is JobPhase.FAILED
    assert late.state.reason.startswith("DeadlineExceeded")


def test_preemption_requeues_without_spending_a_retry() -> None:
    step = preempted(_running(), "job ml/urgent")
    assert (step.state.phase, step.action) == (JobPhase.QUEUED, GroupAction.STOP)
    assert (step.state.preemptions, step.state.restarts) == (1, 0)
    again = admitted(step.state, now=50)
    assert again.state.started_at == 0.0  # the deadline still counts from the first start
    assert "after 1 preemption" in again.events[0][2]


def test_cancel_stops_a_running_job_and_leaves_a_finished_one() -> None:
    step = cancelled(_running(), now=3)
    assert (step.state.phase, step.action) == (JobPhase.CANCELLED, GroupAction.STOP)
    assert cancelled(step.state, now=4).events == []


def test_queue_order_is_priority_then_submission() -> None:
    jobs = [QueuedJob("a", 0, 1.0), QueuedJob("b", 100, 3.0), QueuedJob("c", 100, 2.0)]
    assert [j.key for j in queue_order(jobs)] == ["c", "b", "a"]


def test_torchrun_environment() -> None:
    assert torchrun_env(1, 2, 29500) == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }


@pytest.mark.parametrize("workers", [2, 3])
def test_a_gang_is_admitted_whole_or_not_at_all(workers: int) -> None:
    capacity = Capacity(cpu_millis=2000, memory_bytes=8 * 2**30)
    gang = gang_claim("ml/train", [Claim(f"w{i}", "ml", cpu_millis=1000) for i in range(workers)])
    verdict = admit(gang, [], capacity, {})
    assert verdict.admitted is (workers == 2)
    if workers == 3:
        assert "insufficient cpu (requests 3000m" in verdict.reason


def test_a_gang_counts_one_pod_per_worker_against_the_quota() -> None:
    capacity = Capacity(cpu_millis=64000, memory_bytes=64 * 2**30)
    gang = gang_claim("ml/train", [Claim(f"w{i}", "ml") for i in range(3)])
    verdict = admit(gang, [Claim("r0", "ml")], capacity, {"ml": QuotaLimits(pods=3)})
    assert not verdict.admitted
    assert "pods used 1 + requested 3 > hard 3" in verdict.reason


def test_a_higher_priority_gang_preempts_what_it_needs() -> None:
    capacity = Capacity(cpu_millis=2000, memory_bytes=8 * 2**30)
    low = gang_claim("ml/low", [Claim(f"l{i}", "ml", cpu_millis=1000) for i in range(2)])
    high = gang_claim(
        "ml/high", [Claim(f"h{i}", "ml", priority=100, cpu_millis=1000) for i in range(2)]
    )
    verdict = admit(high, [low], capacity, {})
    assert verdict.admitted and verdict.victims == ("ml/low",)
