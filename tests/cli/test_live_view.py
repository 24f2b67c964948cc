"""The live view (`mlkube up`, `status --watch`) as an 80x24 terminal shows it.

The frame is drawn by the real ``show_live`` on a rich Console that behaves as a terminal of
80 columns and 24 rows; what it wrote, without the cursor movements, is the text a person
reads. Nothing important may be cut: not the names, phases, restarts or readiness, not the
reason a replica is not ready, and no row may fall off the bottom of the screen.
"""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console

from mlkube.backends.local.status_view import status_report
from mlkube.cli.output import print_tables, show_live

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
MODEL_ERROR = "error: cannot load onnx model /srv/models/sentiment/2026-11-30/model.onnx: no file"
PENDING = "insufficient cpu (requests 500m, 250m of 1750m allocatable free)"


def replica(name: str, revision: int, phase: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "revision": revision,
        "phase": phase,
        "port": 39001,
        "pid": 104071,
        "restarts": 0,
        "lastReason": "",
        "lastError": None,
        "pendingReason": "",
        "cpuCores": 0.25,
        "memoryBytes": 90165248,
        **fields,
    }


def status_document() -> dict[str, Any]:
    """`GET /status` in the middle of a canary: one replica crash-looping, one pending."""
    failing = {"restarts": 12, "port": None, "pid": None, "cpuCores": None, "memoryBytes": None}
    return {
        "controller": {"enforcement": "cgroup-v1", "prometheus": None},
        "deployments": [
            {
                "name": "sentiment",
                "namespace": "production",
                "port": 18537,
                "desired": 3,
                "ready": 2,
                "revision": 1,
                "rollout": {"target": 2, "strategy": "Canary", "phase": "Progressing"},
                "requestsPerSecond": 1234.5,
                "p50Ms": 1.25,
                "p99Ms": 12.5,
                "requests": {"cpu": "500m", "memory": "512Mi"},
                "limits": {"cpu": "2", "memory": "2Gi"},
                "lastEvent": "Started: started replica sentiment-2-aa11bb",
                "autoscaler": {
                    "desiredReplicas": 3,
                    "reason": "rps asks for 3; 2 → 3",
                    "metrics": {"rps_stable": 1234.5, "desired_by_rps": 3.0},
                    "limitedBy": "",
                },
                "replicas": [
                    replica("sentiment-1-4d8b00", 1, "Ready"),
                    replica("sentiment-1-9c0e11", 1, "Ready"),
                    replica(
                        "sentiment-2-e7f7a2",
                        2,
                        "CrashLoopBackOff",
                        lastReason="exited with code 1",
                        lastError=MODEL_ERROR,
                        **failing,
                    ),
                    replica("sentiment-2-aa11bb", 2, "Pending", pendingReason=PENDING, **failing),
                ],
            }
        ],
    }


def last_frame(document: dict[str, Any]) -> list[str]:
    report = status_report(document, document["deployments"])
    screen = io.StringIO()
    console = Console(
        file=screen, width=80, height=24, force_terminal=True, color_system=None, highlight=False
    )
    show_live([(report.tables, report.notes)], console=console)
    text = ANSI.sub("", screen.getvalue())
    title = "mlkube · limits enforced by"
    return (title + text.split(title)[-1]).rstrip("\n").splitlines()


def words(lines: list[str]) -> str:
    return " ".join(" ".join(lines).split())


def test_the_live_view_fits_80_columns_and_24_rows_without_losing_anything():
    lines = last_frame(status_document())
    assert max(len(line) for line in lines) <= 80
    assert len(lines) <= 24
    assert not any(line.strip() == "..." for line in lines), "rows fell off the screen"
    text = "\n".join(lines)
    # names, phases, counts: whole, never folded into pieces
    for whole in (
        "production/sentiment",
        "sentiment-1-4d8b00",
        "sentiment-2-e7f7a2",
        "sentiment-2-aa11bb",
        "CrashLoopBackOff",
        "Pending",
        "2/3",
        "Progressing",
    ):
        assert whole in text, whole
    restarts = next(line for line in lines if line.startswith("sentiment-2-e7f7a2"))
    assert restarts.split()[:3] == ["sentiment-2-e7f7a2", "2", "CrashLoopBackOff"]
    assert "12" in restarts.split()
    # why the replicas are not ready, in full (wrapped at spaces, never cut)
    assert f"sentiment-2-e7f7a2: {MODEL_ERROR}" in words(lines)
    assert f"sentiment-2-aa11bb: {PENDING}" in words(lines)
    assert "sentiment: autoscaler wants 3 (desired 3): rps asks for 3; 2 → 3" in words(lines)


def test_a_name_too_long_for_80_columns_folds_but_loses_no_column():
    document = status_document()
    long_name = "sentiment-classifier-for-product-reviews"
    document["deployments"][0]["name"] = long_name
    lines = last_frame(document)
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("replica"))
    assert header.split() == ["replica", "rev", "phase", "port", "pid", "restarts", "cpu", "memory"]
    assert "".join(lines).replace(" ", "").count(long_name) >= 1  # every character is there


def test_the_printed_status_keeps_the_reason_under_the_tables(capsys):
    document = status_document()
    report = status_report(document, document["deployments"])
    print_tables(report.tables, report.notes)
    out = capsys.readouterr().out
    assert f"sentiment-2-e7f7a2: {MODEL_ERROR}" in out.splitlines()
    table_lines = out.split("sentiment-2-e7f7a2:")[0].splitlines()
    assert max(len(line) for line in table_lines) <= 80
