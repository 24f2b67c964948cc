"""How ``mlkube jobs --target kubernetes`` reads a batch/v1 Job's status (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from mlkube.backends.kubernetes.status import job_row


def _job(status: dict[str, Any], **spec: Any) -> dict[str, Any]:  # a batch/v1 Job
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"parallelism": 2, **spec},
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "spec", "phase", "reason"),
    [
        ({}, {}, "Queued", ""),
        (
            {"conditions": [{"type": "Suspended", "status": "True"}]},
            {"suspend": True},
            "Queued",
            "suspended (waiting for Kueue to admit it)",
        ),
        ({"active": 2, "startTime": "2026-01-01T00:00:05Z"}, {}, "Running", ""),
        (
            {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]},
            {},
            "Succeeded",
            "",
        ),
        (
            {
                "failed": 3,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            },
            {},
            "Failed",
            "BackoffLimitExceeded: Job has reached the specified backoff limit",
        ),
    ],
)
def test_a_jobs_phase_and_reason_come_from_its_status(
    status: dict[str, Any], spec: dict[str, Any], phase: str, reason: str
) -> None:
    row = job_row(_job(status, **spec))
    assert (row.phase, row.reason, row.workers) == (phase, reason, 2)
    assert row.submitted == 1767225600.0
