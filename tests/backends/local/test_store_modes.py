"""The state directory and what the controller writes in it are readable by their owner only:
payloads, events, specs and the token must not reach other local users."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from mlkube.backends.local.private import private_file
from mlkube.backends.local.store import EventRow, Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_makes_its_folder_0700_and_its_files_0600(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # a state dir made by an older mlkube
    store = Store(state / "state.db")
    store.add_event("ns/a", EventRow(1.0, "Normal", "Created", "hello"))
    assert mode(state) == 0o700
    files = sorted(p.name for p in state.iterdir())
    assert "state.db" in files and "state.db-wal" in files
    assert {p.name: mode(p) for p in state.iterdir()} == dict.fromkeys(files, 0o600)
    store.close()


def test_an_existing_world_readable_file_is_tightened(tmp_path):
    path = tmp_path / "controller.log"
    path.write_text("old lines\n")
    path.chmod(0o644)
    private_file(path)
    assert mode(path) == 0o600
    assert path.read_text() == "old lines\n"


def test_the_controller_process_creates_only_owner_only_files(tmp_path):
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlkube.backends.local.controller", "--state-dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "controller.json").exists() and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.05)
        assert json.loads((state / "controller.json").read_text())["pid"] == process.pid
        assert mode(state) == 0o700
        for path in state.rglob("*"):
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(30)
