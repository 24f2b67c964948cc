"""Fixtures every test directory may use."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@dataclass(frozen=True)
class BenchRun:
    """A finished ``bench/`` script: the JSON it wrote, where, and what it printed."""

    report: dict[str, Any]
    output: Path
    stdout: str


@pytest.fixture
def run_bench(tmp_path: Path) -> Callable[..., BenchRun]:
    """Run ``bench/SCRIPT`` with ``args`` and its JSON written into ``tmp_path``; a failed run
    fails the test with what the script printed."""

    def run(
        script: str, *args: str, output_option: str = "--output", timeout_s: float = 300
    ) -> BenchRun:
        output = tmp_path / f"{Path(script).stem}.json"
        done = subprocess.run(
            [sys.executable, str(BENCH / script), *args, output_option, str(output)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return BenchRun(json.loads(output.read_text()), output, done.stdout)

    return run
