"""The only module that spawns, signals and reaps processes.

Every replica (and a detached controller) starts in its own session, so its process group id
is its pid and ``killpg`` reaches every child it made. A handle remembers the pid and the
process start time, so a restarted controller can tell its replica from a new process that
reused the pid (``adopt``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

START_TIME_TOLERANCE_S = 0.05  # psutil reports create_time from /proc with jiffy precision


@dataclass(frozen=True, slots=True)
class Exit:
    """How a process ended: ``code`` for a normal exit, ``signal`` when killed."""

    code: int | None
    signal: int | None

    @property
    def reason(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.code is None:
            return "exited (status unknown: adopted process)"
        return f"exited with code {self.code}"


class ProcessHandle:
    """A process this controller started or adopted."""

    def __init__(self, pid: int, start_time: float, popen: subprocess.Popen[bytes] | None) -> None:
        self.pid = pid
        self.start_time = start_time
        self._popen = popen

    def poll(self) -> Exit | None:
        """None while running; how it ended once it has."""
        if self._popen is not None:
            code = self._popen.poll()
            if code is None:
                return None
            return Exit(None, -code) if code < 0 else Exit(code, None)
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return Exit(None, None)
            if abs(proc.create_time() - self.start_time) > START_TIME_TOLERANCE_S:
                return Exit(None, None)
        except psutil.NoSuchProcess:
            return Exit(None, None)
        return None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group (every process the replica started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def terminate(self) -> None:
        self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)

    def group_alive(self) -> bool:
        """Whether any process of the group is still running (zombies excluded)."""
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.pid and proc.status() != psutil.STATUS_ZOMBIE:
                    return True
            except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                continue
        return False

    def rss_and_cpu(self) -> tuple[int, float] | None:
        """(resident bytes, CPU seconds) of the process, or None when it is gone."""
        try:
            proc = psutil.Process(self.pid)
            times = proc.cpu_times()
            return int(proc.memory_info().rss), float(times.user + times.system)
        except psutil.Error:
            return None


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    preexec: Callable[[], None] | None = None,
    cwd: str | None = None,
) -> ProcessHandle:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(  # noqa: S603 - argv is our own command, never a shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec,  # rlimits and affinity must be set in the child
            close_fds=True,
        )
    try:
        start = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        start = 0.0
    return ProcessHandle(popen.pid, start, popen)


def adopt(pid: int, start_time: float) -> ProcessHandle | None:
    """A handle on a process a previous controller started, if it is still the same one."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if abs(proc.create_time() - start_time) > START_TIME_TOLERANCE_S:
            return None
    except psutil.Error:
        return None
    return ProcessHandle(pid, start_time, None)


def pid_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def run_command(argv: Sequence[str], *, timeout_s: float) -> tuple[int, str]:
    """Run a short tool (nvidia-smi) and return (exit code, stdout)."""
    try:
        done = subprocess.run(  # noqa: S603 - a fixed tool path, never a shell
            list(argv), capture_output=True, timeout=timeout_s, check=False, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return -1, str(error)
    return done.returncode, done.stdout
