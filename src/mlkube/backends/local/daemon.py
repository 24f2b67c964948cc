"""A loopback HTTP daemon that ``mlkube up`` starts and ``mlkube down`` stops.

Prometheus and Alertmanager run the same way: one Debian binary on 127.0.0.1 and a free
port, its files in one folder of the state directory (folder 0700, files 0600, the daemon's
own included: an Alertmanager config may hold a Slack or PagerDuty key), started through
``backends.local.supervisor`` (the one module that spawns), ready once ``GET /-/ready``
answers 200, and recorded in a JSON file (pid, start time, port, URL) so ``mlkube down`` in
another process stops exactly the process that ``up`` started and never a process that
reused its pid.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkube.clock import SystemClock
from mlkube.errors import BackendError

CLOCK = SystemClock()
POLL_S = 0.1
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

# Handles of the daemons this process started: keeping the Popen lets ``stop`` reap the
# child (no zombie, no "still running" warning when it is garbage-collected).
_STARTED: dict[int, Any] = {}


@dataclass(frozen=True, slots=True)
class Recorded:
    """A running daemon, as its JSON record says."""

    pid: int
    start_time: float
    port: int
    url: str
    config: str


def private_folder(folder: Path) -> Path:
    """``folder`` (and its parents), the folder itself readable by this user only."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(PRIVATE_DIR)
    return folder


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 from the first byte.

    A fresh temporary name per call (``mkstemp`` creates it 0600), so two writers at once (an
    apply and an ``up``) each replace the file whole and neither fails.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def start(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    config: Path,
    log: Path,
    record: Path,
    timeout_s: float,
) -> Recorded:
    """Spawn ``argv`` (listening on 127.0.0.1:``port``), wait until ready, record it.

    Raises BackendError with the last lines of ``log`` when it exits or is not ready in time.
    """
    from mlkube.backends.local import supervisor
    from mlkube.backends.local.ports import LOOPBACK

    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE))
    handle = supervisor.spawn(argv, env=dict(os.environ), log_path=log, preexec=_private_umask)
    url = f"http://{LOOPBACK}:{port}"
    if not _wait_ready(url, handle, timeout_s):
        handle.kill()
        handle.poll()
        raise BackendError(
            f"{name} did not become ready on {url} within {timeout_s:g}s "
            f"(see {log}): {log_tail(log)}"
        )
    recorded = Recorded(handle.pid, handle.start_time, port, url, str(config))
    write_private(record, json.dumps(_as_json(recorded)))
    _STARTED[handle.pid] = handle
    return recorded


def read(record: Path) -> Recorded | None:
    """What ``record`` says, or None without a readable record."""
    try:
        data = json.loads(record.read_text())
        return Recorded(
            int(data["pid"]),
            float(data["startTime"]),
            int(data["port"]),
            str(data["url"]),
            str(data["config"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(record: Path) -> Recorded | None:
    """The daemon ``record`` names if that very process still runs."""
    from mlkube.backends.local import supervisor

    found = read(record)
    if found is None or supervisor.adopt(found.pid, found.start_time) is None:
        return None
    return found


def reload(record: Path) -> bool:
    """``POST /-/reload`` to the recorded daemon; False when none runs or it refuses."""
    found = running(record)
    if found is None:
        return False
    request = urllib.request.Request(f"{found.url}/-/reload", method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop(record: Path, *, timeout_s: float) -> bool:
    """Stop the recorded daemon (SIGTERM, then SIGKILL after ``timeout_s``).

    False when none was running. A pid reused by another process is never signalled: the
    start time must match too.
    """
    from mlkube.backends.local import supervisor

    found = read(record)
    if found is None:
        return False
    handle = supervisor.adopt(found.pid, found.start_time)
    own = _STARTED.pop(found.pid, None)
    if handle is not None and own is not None:
        handle = own
    record.unlink(missing_ok=True)
    if handle is None:
        return False
    handle.signal_group(signal.SIGTERM)
    deadline = CLOCK.monotonic() + timeout_s
    while CLOCK.monotonic() < deadline:
        if handle.poll() is not None:
            return True
        CLOCK.sleep_blocking(POLL_S)
    handle.kill()
    handle.poll()
    return True


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _private_umask() -> None:
    """In the child: what the daemon creates (TSDB, silences, notification log) is 0600/0700."""
    os.umask(0o077)


def _wait_ready(url: str, handle: Any, timeout_s: float) -> bool:
    deadline = CLOCK.monotonic() + timeout_s
    while CLOCK.monotonic() < deadline:
        if handle.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        CLOCK.sleep_blocking(POLL_S)
    return False


def _as_json(recorded: Recorded) -> dict[str, Any]:
    return {
        "pid": recorded.pid,
        "startTime": recorded.start_time,
        "port": recorded.port,
        "url": recorded.url,
        "config": recorded.config,
    }
