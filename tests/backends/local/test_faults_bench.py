"""``bench/faults.py`` runs selected faults under a paced load and reports what failed.

The faults the data plane must absorb without a single failed request are run here (replica
SIGKILL, controller SIGKILL + restart, scaling, a rolling update, a corrupt rollout) against a
real controller, balancer and replicas; the assertions are counts of failed requests and kept
pids, never times.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_kills_restart_scale_and_rollouts_fail_no_request(run_bench: Callable[..., Any]) -> None:
    done = run_bench(
        "faults.py",
        *("--fault", "replica-kill", "--fault", "controller-restart", "--fault", "scale"),
        *("--fault", "rollout-good", "--fault", "rollout-corrupt", "--rate", "40"),
        *("--baseline-seconds", "0.5", "--settle-seconds", "0.5", "--headless-seconds", "0.5"),
        output_option="--out",
        timeout_s=600,
    )
    faults = done.report["faults"]
    assert list(faults) == [
        "baseline",
        "replica-kill",
        "controller-restart",
        "scale",
        "rollout-good",
        "rollout-corrupt",
    ]
    for name, row in faults.items():
        assert row["sent"] > 0, name
        assert row["failed"] == 0, (name, row)
        assert "ERROR" not in row["notes"], (name, row)
    assert faults["controller-restart"]["pidsKept"] is True
    assert faults["rollout-good"]["notes"] == "revision 1 -> 2"
    assert faults["rollout-corrupt"]["notes"] == "failed, stable kept"
    table = done.stdout.splitlines()
    assert table[0].split()[:2] == ["fault", "failed/sent"]
    assert all(len(line) <= 80 for line in table)
