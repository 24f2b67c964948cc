"""Rotating log files of the local backend: ``replica.log``, ``replica.log.1`` ... ``.N``.

Two ways to rotate a replica's stdout, for the two ways the local backend can hold it:
- ``RotatingFile`` + ``pump``: the replica's stdout is a pipe; a task of the controller copies
  it line by line into a ``RotatingFile`` that rotates at line boundaries. Nothing is lost.
- ``rotate_copytruncate``: the replica writes the file itself (opened ``O_APPEND``, what
  ``supervisor.spawn`` does today); a periodic call copies the file to ``.1`` and truncates it
  in place, so the child's next append lands at offset 0. Lines written between the copy and
  the truncate (microseconds) are lost, as with logrotate's ``copytruncate``.
``read_rotated`` yields a replica's lines oldest first across its rotated files, ready for
``logs.merge_log_lines``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from io import BufferedWriter
from pathlib import Path

READ_CHUNK = 64 * 1024


def _backup(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def _shift_numbered(path: Path, backups: int) -> None:
    """``.N-1`` → ``.N`` ... ``.1`` → ``.2``; the oldest beyond ``backups`` is deleted."""
    _backup(path, backups).unlink(missing_ok=True)
    for index in range(backups - 1, 0, -1):
        older = _backup(path, index)
        if older.exists():
            older.replace(_backup(path, index + 1))


def shift_backups(path: Path, backups: int) -> None:
    """Rotate by renaming: the backups shift by one and ``path`` becomes ``.1``."""
    if backups <= 0:
        path.unlink(missing_ok=True)
        return
    _shift_numbered(path, backups)
    if path.exists():
        path.replace(_backup(path, 1))


class RotatingFile:
    """An append-only log file that rotates when it reaches ``max_bytes``, at a line end."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _open_private(path)
        self._size = self._file.tell()
        self._last = b"\n"
        if self._size:
            with open(path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                self._last = existing.read(1)

    def write(self, data: bytes) -> None:
        """Append ``data``; rotate first when the file is full and ``data`` starts a line."""
        if not data:
            return
        if self._size >= self.max_bytes and self._last == b"\n":
            self.rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        self._last = data[-1:]

    def rotate(self) -> None:
        self._file.close()
        shift_backups(self.path, self.backups)
        self._file = _open_private(self.path)
        self._size = 0

    def close(self) -> None:
        self._file.close()


async def pump(reader: asyncio.StreamReader, sink: RotatingFile) -> None:
    """Copy a replica's stdout pipe into ``sink`` line by line until the pipe closes."""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:
            if end.partial:
                sink.write(end.partial + b"\n")
            return
        except asyncio.LimitOverrunError as error:
            # A line longer than the reader's limit: write what is buffered, continue.
            line = await reader.readexactly(error.consumed)
        sink.write(line)


def rotate_copytruncate(path: Path, *, max_bytes: int, backups: int) -> bool:
    """Rotate a file another process appends to, when it reached ``max_bytes``.

    Returns True when it rotated. Safe only for writers that opened the file with
    ``O_APPEND`` (their next write goes to the new end, offset 0).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size < max_bytes:
        return False
    if backups <= 0:
        os.truncate(path, 0)
        return True
    _shift_numbered(path, backups)
    backup = _backup(path, 1)
    with open(path, "rb") as source, os.fdopen(_private_fd(backup, os.O_TRUNC), "wb") as target:
        shutil.copyfileobj(source, target, READ_CHUNK)
        copied = source.tell()
    with open(path, "r+b") as live:
        live.truncate(0)
    return copied > 0


def _private_fd(path: Path, flags: int) -> int:
    """A descriptor for writing ``path``, created owner-only (0600): logs hold payloads."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flags, 0o600)


def _open_private(path: Path) -> BufferedWriter:
    return os.fdopen(_private_fd(path, os.O_APPEND), "ab")


def rotated_files(path: Path) -> list[Path]:
    """``path``'s rotated files and itself, oldest first (those that exist)."""
    backups = []
    index = 1
    while _backup(path, index).exists():
        backups.append(_backup(path, index))
        index += 1
    return [*reversed(backups), *([path] if path.exists() else [])]


def read_rotated(path: Path) -> Iterator[str]:
    """Every line of ``path`` and its rotated files, oldest first (lazily, file by file)."""
    for file in rotated_files(path):
        with open(file, encoding="utf-8", errors="replace") as handle:
            yield from handle
