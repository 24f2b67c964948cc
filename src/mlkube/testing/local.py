"""Drive a real local controller from tests and benchmarks, and load it with a bounded client.

``LocalController`` runs ``mlkube`` commands against one state directory, reads status and
events straight from the control API (polling through the CLI would start a Python process per
poll on a two-core machine), and ends every process it saw — by PID — on ``cleanup``.
``LoadClient`` is a bounded closed-loop client: threads on keep-alive connections, stopped by the
caller or by its own deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlkube.backends.local.controller.api import CONTROLLER_FILE, Client
from mlkube.backends.local.supervisor import pid_alive

CLI_TIMEOUT_S = 90
WAIT_POLL_S = 0.1
"""How often ``wait`` asks again: one control-API call, cheap beside the 0.125 s a test
waited on average past the moment its condition held at the former 0.25 s."""
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


class LocalController:
    """One controller's state directory and the ``mlkube`` commands run against it."""

    def __init__(self, state: Path, env: Mapping[str, str] | None = None) -> None:
        self.state = state
        self.env = {**os.environ, **(env or {}), "MLKUBE_STATE_DIR": str(state)}
        self.pids: set[int] = set()
        self.last: dict[str, Any] = {}
        self._control: tuple[bytes, Client] | None = None

    def _client(self) -> Client:
        """A client of the controller that ``controller.json`` names now; kept while that file
        is unchanged, since building one costs ~20 ms (httpx loads the CA bundle) and
        ``wait`` asks ten times a second. It keeps no connection between calls."""
        try:
            written = (self.state / CONTROLLER_FILE).read_bytes()
        except OSError:
            return Client(self.state)  # raises ControllerNotRunningError, as it always did
        if self._control is None or self._control[0] != written:
            self._control = (written, Client(self.state))
        return self._control[1]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mlkube", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"mlkube {' '.join(args)} failed: {done.stderr}{done.stdout}")
        return done

    def status(self, name: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = self._client().call(
            "GET", f"/status?name={name}" if name else "/status"
        )
        for dep in data["deployments"]:
            self.pids.update(r["pid"] for r in dep["replicas"] if r["pid"])
        return data

    def deployment(self, name: str) -> dict[str, Any]:
        dep: dict[str, Any] = self.status(name)["deployments"][0]
        self.last = {k: dep.get(k) for k in ("desired", "ready", "autoscaler", "lastEvent")}
        return dep

    def events(self, name: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._client().call(
            "GET", f"/events?name={name}&limit={limit}"
        )
        return rows

    def controller_pid(self) -> int:
        return int(json.loads((self.state / "controller.json").read_text())["pid"])

    def balancer_pid(self) -> int:
        return int(json.loads((self.state / "balancer.json").read_text())["pid"])

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 60.0) -> float:
        """Poll ``predicate`` until true; the seconds it took, or AssertionError naming ``what``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if predicate():
                return time.monotonic() - start
            time.sleep(WAIT_POLL_S)
        raise AssertionError(
            f"timed out after {timeout_s}s waiting for {what}; last status: {self.last}"
        )

    def _down_has_work(self) -> bool:
        """Whether ``mlkube down`` would stop anything: a live controller, or the data plane
        (``balancer.json``) a dead one left. Otherwise it only exits 1 ("no controller"),
        after a Python start-up: a test that never started one, or ran ``down`` itself."""
        if (self.state / "balancer.json").exists():
            return True
        try:
            return pid_alive(self.controller_pid())
        except (OSError, ValueError, KeyError):  # no controller.json (or half written)
            return False

    def cleanup(self) -> None:
        """``mlkube down``, then SIGKILL every process group and process this driver saw."""
        with contextlib.suppress(Exception):
            self.pids.add(self.controller_pid())
        with contextlib.suppress(Exception):  # the balancer process outlives a killed controller
            self.pids.add(self.balancer_pid())
        if self._down_has_work():
            with contextlib.suppress(Exception):
                self.run("down", check=False)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class LoadClient:
    """``workers`` threads posting one row on keep-alive connections, bounded in time."""

    def __init__(
        self,
        port: int,
        model: str,
        workers: int = 4,
        pause_s: float = 0.0,
        *,
        max_s: float = 240.0,
        row: list[float] | None = None,
    ) -> None:
        self.port, self.model, self.pause_s, self.max_s = port, model, pause_s, max_s
        self.body = json.dumps({"instances": [row or IRIS_ROW]})
        self.codes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def __enter__(self) -> LoadClient:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.codes.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(c for code, c in self.codes.items() if code != 200) + sum(self.errors.values())

    def _run(self) -> None:
        path = f"/v1/models/{self.model}:predict"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        deadline = time.monotonic() + self.max_s  # bounded even if the caller never stops it
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("POST", path, self.body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                with self._lock:
                    self.codes[response.status] += 1
            except (OSError, http.client.HTTPException) as error:
                with self._lock:
                    self.errors[type(error).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            if self.pause_s:
                time.sleep(self.pause_s)
        conn.close()
