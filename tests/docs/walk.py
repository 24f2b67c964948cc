"""Run one page's commands, in order, in a scratch working copy, as a reader would type them.

The working copy holds what the commands name (``examples/``, ``scripts/``, ``docs/``,
``README.md``, ``pyproject.toml``) and a private state directory (``MLKUBE_STATE_DIR``), so a
walk never meets another test's controller. ``mlkube`` and ``python`` on its ``PATH`` are this
interpreter with this tree's sources; ``.venv`` there is a stand-in that ``scripts/setup``
accepts as installed (the walk must not pip-install anything).

One substitution, so walks can run beside other tests: the example's service port 8501 becomes
a free loopback port, in the copied spec, in ``$PORT`` (``scripts/example``) and in the output
the page shows.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mlkube.testing.local import LocalController

from .doc_commands import Command, Page, ShownOutput, Skipped, WriteFile, output_matches

REPO = Path(__file__).resolve().parents[2]
COPIED = ("examples", "scripts", "docs", "deploy", "README.md", "pyproject.toml")
DOCUMENTED_PORT = 8501
COMMAND_TIMEOUT_S = 240.0
INTERRUPT_WAIT_S = 180.0
TERMINAL_COLUMNS = 80  # the live view must fit a standard terminal
TERMINAL_ROWS = 50
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r")


@dataclass
class Ran:
    """What one command did."""

    command: Command
    exit_code: int
    output: str
    seconds: float


@dataclass
class WalkResult:
    """Every command a page ran, what it skipped, and what went wrong."""

    page: str
    ran: list[Ran] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Workspace:
    """A scratch working copy with its own state directory and ``mlkube`` on ``PATH``."""

    def __init__(self, root: Path) -> None:
        self.root = root / "work"
        self.state = root / "state"
        self.port = free_port()
        for name in COPIED:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(
                    source, self.root / name, ignore=shutil.ignore_patterns("models", "__pycache__")
                )
            else:
                shutil.copy2(source, self.root / name)
        self._retarget_example_port()
        bin_dir = root / "bin"
        self._shims(bin_dir)
        self._venv_stand_in()
        source_path = str(REPO / "src")
        python_path = os.pathsep.join(p for p in (source_path, os.environ.get("PYTHONPATH")) if p)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": python_path,
            "MLKUBE_STATE_DIR": str(self.state),
            "PORT": str(self.port),
            "COLUMNS": str(TERMINAL_COLUMNS),
            "LINES": str(TERMINAL_ROWS),
        }
        self.controller = LocalController(self.state, self.env)

    def _retarget_example_port(self) -> None:
        for spec in (self.root / "examples").rglob("*.yaml"):
            text = spec.read_text()
            moved = text.replace(f"port: {DOCUMENTED_PORT}", f"port: {self.port}")
            if moved != text:
                spec.write_text(moved)

    def _shims(self, bin_dir: Path) -> None:
        bin_dir.mkdir()
        scripts = {
            "mlkube": f'exec "{sys.executable}" -m mlkube "$@"\n',
            "python": f'exec "{sys.executable}" "$@"\n',
        }
        for name, body in scripts.items():
            path = bin_dir / name
            path.write_text("#!/usr/bin/env bash\n" + body)
            path.chmod(0o755)

    def _venv_stand_in(self) -> None:
        venv_bin = self.root / ".venv" / "bin"
        venv_bin.parent.mkdir()
        venv_bin.symlink_to(self.root.parent / "bin", target_is_directory=True)
        stamp = self.root / ".venv" / ".mlkube-installed"
        stamp.touch()  # newer than the copied pyproject.toml: scripts/setup installs nothing

    def shown(self, lines: list[str] | tuple[str, ...]) -> list[str]:
        """The page's shown output with the documented port replaced by this copy's."""
        return [line.replace(str(DOCUMENTED_PORT), str(self.port)) for line in lines]

    def run(self, command: Command) -> Ran:
        start = time.monotonic()
        text = command.text.replace(f":{DOCUMENTED_PORT}", f":{self.port}")
        if command.interrupt_when is not None:
            code, output = self._run_until(text, command.interrupt_when)
        else:
            try:
                done = subprocess.run(
                    ["bash", "-c", text],
                    cwd=self.root,
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    timeout=COMMAND_TIMEOUT_S,
                    check=False,
                    start_new_session=True,
                )
                code, output = done.returncode, done.stdout
            except subprocess.TimeoutExpired as expired:
                code, output = -1, f"timed out after {COMMAND_TIMEOUT_S}s: {expired.output!r}"
        self._note_pids()
        return Ran(command, code, output, time.monotonic() - start)

    def _run_until(self, text: str, wanted: str) -> tuple[int, str]:
        """Run in an 80-column pseudo-terminal until ``wanted`` shows, then Ctrl-C."""
        leader, follower = os.openpty()
        size = struct.pack("HHHH", TERMINAL_ROWS, TERMINAL_COLUMNS, 0, 0)
        fcntl.ioctl(follower, termios.TIOCSWINSZ, size)
        process = subprocess.Popen(
            ["bash", "-c", text],
            cwd=self.root,
            env={**self.env, "TERM": "xterm"},
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
        )
        os.close(follower)
        seen = bytearray()
        interrupted = False
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        try:
            while True:
                if not interrupted and wanted in ANSI.sub("", seen.decode(errors="replace")):
                    self._note_pids()
                    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C at a terminal does
                    interrupted = True
                    deadline = time.monotonic() + COMMAND_TIMEOUT_S
                if time.monotonic() > deadline:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    return -1, f"no {wanted!r} within the limit: " + _clean(seen)
                ready, _, _ = select.select([leader], [], [], 0.2)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(leader, 65536)
                except OSError as error:  # EIO: the terminal's last writer has gone
                    if error.errno != errno.EIO:
                        raise
                    chunk = b""
                if not chunk:
                    break
                seen.extend(chunk)
            code = process.wait(timeout=COMMAND_TIMEOUT_S)
        finally:
            os.close(leader)
        if not interrupted:
            return (code or -1), f"exited before {wanted!r} showed: " + _clean(seen)
        return code, _clean(seen)

    def _note_pids(self) -> None:
        """Remember every controller, replica and Prometheus pid, so cleanup can end them."""
        with contextlib.suppress(Exception):
            self.controller.pids.add(self.controller.controller_pid())
            self.controller.status()
        with contextlib.suppress(Exception):
            recorded = json.loads((self.state / "prometheus" / "prometheus.json").read_text())
            if "prometheus" in psutil.Process(int(recorded["pid"])).name():  # not a reused pid
                self.controller.pids.add(int(recorded["pid"]))

    def cleanup(self) -> None:
        """``mlkube down`` and then SIGKILL to anything of this walk that is left."""
        self._note_pids()
        self.controller.cleanup()


def _clean(raw: bytes | bytearray) -> str:
    return ANSI.sub("", raw.decode(errors="replace"))


def walk(page: Page, workspace: Workspace) -> WalkResult:
    """Run ``page``'s steps; every mismatch becomes a failure line naming the page's line."""
    result = WalkResult(page.path)
    try:
        for step in page.steps:
            if isinstance(step, Skipped):
                result.skipped.append(step)
            elif isinstance(step, WriteFile):
                target = workspace.root / step.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step.content)
            elif isinstance(step, ShownOutput):
                _check_shown(step, result, workspace)
            else:
                ran = workspace.run(step)
                result.ran.append(ran)
                _check(ran, result, workspace)
    finally:
        workspace.cleanup()
    return result


def _check(ran: Ran, result: WalkResult, workspace: Workspace) -> None:
    command = ran.command
    if ran.exit_code != command.expected_exit:
        tail = "\n    ".join(ran.output.strip().splitlines()[-15:])
        result.failures.append(
            f"{command.where}: `{command.text}` exited {ran.exit_code}, the page expects "
            f"{command.expected_exit}:\n    {tail}"
        )
        return
    missing = output_matches(workspace.shown(command.shown_output), ran.output)
    if missing:
        result.failures.append(
            f"{command.where}: `{command.text}` did not print {missing}; it printed:\n" + ran.output
        )


def _check_shown(step: ShownOutput, result: WalkResult, workspace: Workspace) -> None:
    earlier = [r for r in result.ran if r.command.text.startswith(step.of)]
    if not earlier:
        result.failures.append(f"{step.page}:{step.line}: no command `{step.of}` ran before")
        return
    missing = output_matches(workspace.shown(step.lines), earlier[-1].output)
    if missing:
        result.failures.append(
            f"{step.page}:{step.line}: `{step.of}` did not print {missing}; it printed:\n"
            + earlier[-1].output
        )
